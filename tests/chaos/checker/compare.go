package checker

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// diff says how an archived record differs from the record Kafka holds at its offset, or
// returns "" when they are the same byte for byte: timestamp and its type, key, value and
// headers in order, null distinct from empty.
func diff(a *record, k *kgo.Record) string {
	var d []string
	if a.topic != k.Topic || a.partition != k.Partition {
		d = append(d, fmt.Sprintf("the line is of %s/%d, Kafka's record of %s/%d", a.topic, a.partition, k.Topic, k.Partition))
	}
	if ms := k.Timestamp.UnixMilli(); a.ts != ms {
		d = append(d, fmt.Sprintf("timestamp %d, Kafka's %d", a.ts, ms))
	}
	if logAppend := k.Attrs.TimestampType() == 1; a.logAppend != logAppend {
		d = append(d, fmt.Sprintf("log_append %t, Kafka's %t", a.logAppend, logAppend))
	}
	if s := diffBytes(a.key, k.Key); s != "" {
		d = append(d, "key "+s)
	}
	if s := diffBytes(a.value, k.Value); s != "" {
		d = append(d, "value "+s)
	}
	if s := diffHeaders(a.headers, k.Headers); s != "" {
		d = append(d, s)
	}
	return strings.Join(d, "; ")
}

func diffHeaders(a []header, k []kgo.RecordHeader) string {
	if len(a) != len(k) {
		return fmt.Sprintf("%d headers, Kafka's %d", len(a), len(k))
	}
	var d []string
	for i := range a {
		if !bytes.Equal(a[i].key, []byte(k[i].Key)) {
			d = append(d, fmt.Sprintf("header %d key %q, Kafka's %q", i, a[i].key, k[i].Key))
		}
		if s := diffBytes(a[i].value, k[i].Value); s != "" {
			d = append(d, fmt.Sprintf("header %d value %s", i, s))
		}
	}
	return strings.Join(d, "; ")
}

// diffBytes compares bytes that may be null (nil).
func diffBytes(a, k []byte) string {
	switch {
	case (a == nil) != (k == nil):
		return fmt.Sprintf("%s, Kafka's %s", describe(a), describe(k))
	case !bytes.Equal(a, k):
		at := 0
		for at < len(a) && at < len(k) && a[at] == k[at] {
			at++
		}
		return fmt.Sprintf("%s, Kafka's %s: they differ from byte %d", describe(a), describe(k), at)
	}
	return ""
}

func describe(b []byte) string {
	if b == nil {
		return "null"
	}
	if len(b) <= 24 {
		return fmt.Sprintf("%q", b)
	}
	return fmt.Sprintf("%d bytes", len(b))
}
