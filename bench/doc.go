// Package bench holds karch's Go benchmarks of the codec and the compressor; the shard
// benchmark command is in shardbench/.
//
//	go test -run '^$' -bench . -benchmem ./bench/
package bench
