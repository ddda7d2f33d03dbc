// Package schema holds the JSON Schemas of karch's documents and machine-readable output,
// described in docs/FORMAT.md, and embeds them so that tests and tools validate against the
// very files the documentation names. The schemas are JSON Schema draft 2020-12; they refer
// to each other by file name, relative to this folder.
package schema

import "embed"

// Files of FS, one per document kind.
const (
	Plan         = "plan.schema.json"
	Receipt      = "receipt.schema.json"
	ReceiptV1    = "receipt-v1.schema.json" // read in archives written before karch.receipt/v2
	Manifest     = "manifest.schema.json"
	Batch        = "batch.schema.json"
	Probe        = "probe.schema.json"
	Claim        = "claim.schema.json"
	Record       = "record.schema.json"
	PlanOutput   = "plan-output.schema.json"
	StatusOutput = "status-output.schema.json"
)

// FS holds every *.schema.json of this folder.
//
//go:embed *.schema.json
var FS embed.FS
