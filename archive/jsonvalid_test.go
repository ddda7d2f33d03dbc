package archive

import (
	"encoding/json"
	"strings"
	"testing"
)

// validJSON and json.Valid give the same answer for every input: the fuzzer explores from
// these seeds (go test -fuzz FuzzValidJSON ./archive/), and make test replays them.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `{"a":1}`, `[1,2,3]`, ` {"a" : [true, false, null] } `, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`,
		`{"a"}`, `{"a":}`, `{1:2}`, `"x"`, `"\u00e9\n\"\\\/\b\f\r\t"`, `"\u00G0"`, `"\x"`, "\"\x01\"", "\"\x7f\xff\"",
		`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`, `1E+5`, `1e`, `1e+`, `-1.5e-10`, `+1`, `1 2`, `[1 2]`,
		`tru`, `true`, `nul`, `nullx`, `[true,false,null]`, `{"a":{"b":{"c":[]}}}`, `[[[[]]]]`, `[[[]]`, `{"a":1}}`,
		`{"caller":"+4915112345678","duration_s":183,"cell":{"mcc":262,"mnc":1},"tags":["roaming"]}`,
		strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth),
		strings.Repeat("[", maxNestingDepth+1) + strings.Repeat("]", maxNestingDepth+1),
		strings.Repeat(`{"a":`, maxNestingDepth) + "{}" + strings.Repeat("}", maxNestingDepth),
		strings.Repeat(`{"a":`, maxNestingDepth-1) + "{}" + strings.Repeat("}", maxNestingDepth-1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
