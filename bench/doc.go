// Package bench holds karch's Go benchmarks of the codec, the compressor and planning (the
// last against the local Kafka, which `make bench` starts); the shard benchmark command is in
// shardbench/.
//
//	go test -run '^$' -bench . -benchmem ./bench/
package bench
