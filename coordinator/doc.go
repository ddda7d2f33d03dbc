// Package coordinator will hold karch's coordinator: lease, windows due, offsets, plan, launch,
// await, verify and the manifest commit (shared/DESIGN.md, "Commit order"). It is not built
// yet; until it is, plans are written by hand or by tests and run with `karch shard`.
package coordinator
