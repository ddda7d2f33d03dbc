package faults

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"slices"
	"testing"
	"testing/iotest"
	"time"
)

func TestDiceReplays(t *testing.T) {
	draws := func(seed uint64) []time.Duration {
		d := newDice(seed)
		var out []time.Duration
		for range 20 {
			out = append(out, d.jitter(10*time.Millisecond), time.Duration(d.float()*1e9))
		}
		return out
	}
	if a, b := draws(7), draws(7); !slices.Equal(a, b) {
		t.Fatalf("seed 7 drew %v, then %v", a, b)
	}
	if slices.Equal(draws(7), draws(8)) {
		t.Fatal("seeds 7 and 8 drew the same")
	}
	for _, j := range draws(9) {
		if j < -time.Second || j > time.Second {
			t.Fatalf("draw %v out of range", j)
		}
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0000000000000000FFFF00000100007F:D431": "127.0.0.1:54321",
		"00000000000000000000000001000000:0050": "[::1]:80",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got != netip.MustParseAddrPort(want) {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseProcAddr("zz:1"); err == nil {
		t.Error("parseProcAddr took a bad address")
	}
}

func TestCutReader(t *testing.T) {
	errHook := errors.New("hook")
	for _, tc := range []struct {
		name   string
		size   int
		at     int64
		hook   error
		passed int   // bytes read before the error (or all)
		err    error // the read error, nil for io.EOF
	}{
		{"cut at half", 100, 50, errHook, 50, errHook},
		{"continue after hook", 100, 50, nil, 100, nil},
		{"cut at the end of a short body", 10, 64, errHook, 10, errHook},
		{"cut before anything", 1, 0, errHook, 0, errHook},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			c := &cutReader{r: iotest.OneByteReader(bytes.NewReader(make([]byte, tc.size))), at: tc.at, on: func() error {
				calls++
				return tc.hook
			}}
			got, err := io.ReadAll(c)
			if len(got) != tc.passed || !errors.Is(err, tc.err) || calls != 1 {
				t.Fatalf("read %d bytes, %v, %d hook calls; want %d, %v, 1", len(got), err, calls, tc.passed, tc.err)
			}
		})
	}
}
