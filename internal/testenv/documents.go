package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/karch-archive/karch/archive"
	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/docs/schema"
)

// schemaBase is the URL the schemas are known by while compiled: they refer to each other by
// file name, so any base that keeps them side by side will do.
const schemaBase = "file:///karch/docs/schema/"

var compiled struct {
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	err     error
}

// compileSchemas compiles every schema of docs/schema once per test binary. Formats
// (date-time) are asserted, not only annotated, so a timestamp that is not RFC 3339 fails.
func compileSchemas() (map[string]*jsonschema.Schema, error) {
	compiled.once.Do(func() {
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		names, err := fs.Glob(schema.FS, "*.schema.json")
		if err != nil {
			compiled.err = err
			return
		}
		for _, name := range names {
			if compiled.err = addSchema(c, name); compiled.err != nil {
				return
			}
		}
		compiled.schemas = map[string]*jsonschema.Schema{}
		for _, name := range names {
			s, err := c.Compile(schemaBase + name)
			if err != nil {
				compiled.err = fmt.Errorf("compile %s: %w", name, err)
				return
			}
			compiled.schemas[name] = s
		}
	})
	return compiled.schemas, compiled.err
}

func addSchema(c *jsonschema.Compiler, name string) error {
	data, err := fs.ReadFile(schema.FS, name)
	if err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return c.AddResource(schemaBase+name, doc)
}

// ValidateJSON checks that data is one JSON value that the schema file name of docs/schema
// (schema.Plan, schema.Manifest, ...) accepts. The error lists every violation.
func ValidateJSON(name string, data []byte) error {
	schemas, err := compileSchemas()
	if err != nil {
		return err
	}
	s, ok := schemas[name]
	if !ok {
		return fmt.Errorf("no schema %s in docs/schema", name)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

var receiptName = regexp.MustCompile(`^shard-[0-9]{5}\.json$`)

// DocumentSchema names the schema of the document that karch stores at key (relative to the
// store's root): a window folder's plan, a shard's receipt or the manifest. It returns ""
// for any other key: pieces, and objects outside window folders.
func DocumentSchema(key string) string {
	if archive.IsBatchKey(key) {
		return schema.Batch
	}
	if archive.IsProbeMarkerKey(key) {
		return schema.Probe
	}
	if archive.IsClaimKey(key) {
		return schema.Claim
	}
	if _, ok := archive.ParseWindowDir(key); !ok {
		return ""
	}
	dir, name := path.Split(key)
	switch {
	case name == archive.PlanName:
		return schema.Plan
	case name == archive.ManifestName:
		return schema.Manifest
	case path.Base(dir) == "receipts" && receiptName.MatchString(name):
		return schema.Receipt
	}
	return ""
}

// formatOf maps each schema of a stored document to the format tag karch writes in it.
var formatOf = map[string]string{
	schema.Plan: archive.PlanFormat, schema.Receipt: archive.ReceiptFormat, schema.Manifest: archive.ManifestFormat,
	schema.Batch: archive.BatchFormat, schema.Probe: archive.ProbeFormat, schema.Claim: archive.ClaimFormat,
}

// CheckDocuments validates every plan, receipt and manifest in b against its schema in
// docs/schema, failing t for each one that does not conform, and returns how many it
// validated. Every bucket that S3Config, S3Bucket or LocalBucket hands out is checked this
// way when its test ends, whoever wrote the documents: the test, karch in-process, or a karch
// process the test started. Call it for a store a test opens by other means.
//
// A document under a karch name whose content claims no format this karch writes (not JSON,
// or a "format" such as karch.plan/v99) is one a test planted to see it refused; it is logged
// and left alone. Every document that claims a karch format must conform to it.
func CheckDocuments(t testing.TB, b blob.Bucket) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 0
	err := b.List(ctx, "", func(o blob.ObjectInfo) error {
		name := DocumentSchema(o.Key)
		if name == "" {
			return nil
		}
		data, err := readAll(ctx, b, o.Key)
		if err != nil {
			return err
		}
		if checkDocument(t, o.Key, name, data) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Errorf("list the documents to validate: %v", err)
	}
	return n
}

// checkDocument validates one stored document and reports whether it was karch's to check.
func checkDocument(t testing.TB, key, name string, data []byte) bool {
	t.Helper()
	var head struct {
		Format string `json:"format"`
	}
	claimed := json.Unmarshal(data, &head) == nil && isKarchFormat(head.Format)
	switch {
	case !claimed:
		t.Logf("%s claims no format karch writes (%.40q): a planted fixture, not validated", key, data)
		return false
	case head.Format != formatOf[name]:
		t.Errorf("%s has format %q; a document of that name has %q", key, head.Format, formatOf[name])
	default:
		if err := ValidateJSON(name, data); err != nil {
			t.Errorf("%s does not conform to docs/schema/%s:\n%v", key, name, err)
		}
	}
	return true
}

func isKarchFormat(f string) bool {
	for _, known := range formatOf {
		if f == known {
			return true
		}
	}
	return false
}

func readAll(ctx context.Context, b blob.Bucket, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return buf.Bytes(), nil
}

// checkWhenDone validates the documents in the bucket open returns once t and its subtests
// have finished: by then every writer the test started has stopped.
func checkWhenDone(t testing.TB, open func() (blob.Bucket, error)) {
	t.Cleanup(func() {
		b, err := open()
		if err != nil {
			t.Errorf("open the test's store to validate its documents: %v", err)
			return
		}
		if n := CheckDocuments(t, b); n > 0 {
			t.Logf("validated the test's %d plans, receipts and manifests against docs/schema", n)
		}
	})
}
