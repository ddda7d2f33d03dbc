package faults_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/karch-archive/karch/tests/chaos/faults"
)

func TestParseRequest(t *testing.T) {
	const w = "/b/pre/pipe/dt=2026-01-02/window=0300Z-1h/"
	for _, tc := range []struct {
		method, target string
		header         string // an X-Amz-Copy-Source, if any
		op             faults.Op
		kind           faults.Kind
	}{
		{"PUT", w + "plan.json?x-id=PutObject", "", faults.OpPutObject, faults.KindPlan},
		{"PUT", w + "MANIFEST.json", "", faults.OpPutObject, faults.KindManifest},
		{"PUT", w + "receipts/shard-00012.json", "", faults.OpPutObject, faults.KindReceipt},
		{"PUT", w + "receipts/shard-12.json", "", faults.OpPutObject, faults.KindOther},
		{"PUT", w + "data/orders.v1/3/00000000000000000042.jsonl.zst?partNumber=2&uploadId=u", "", faults.OpUploadPart, faults.KindData},
		{"PUT", w + "data/orders.v1/3/00000000000000000042.parquet", "", faults.OpPutObject, faults.KindParquet},
		{"PUT", "/b/pre/_iceberg/chaos/t/metadata/00001-x.metadata.json", "", faults.OpPutObject, faults.KindTable},
		{"PUT", "/b/pre/_iceberg/chaos/t/metadata/snap-1-x.avro", "", faults.OpPutObject, faults.KindTable},
		{"PUT", w + "plan.json", "/b/other", faults.OpCopyObject, faults.KindPlan},
		{"PUT", w + "plan.json?tagging", "", faults.OpOther, faults.KindPlan},
		{"POST", w + "data/t/0/00000000000000000000.jsonl.zst?uploads", "", faults.OpCreateMultipartUpload, faults.KindData},
		{"POST", w + "data/t/0/00000000000000000000.jsonl.zst?uploadId=u", "", faults.OpCompleteMultipartUpload, faults.KindData},
		{"DELETE", w + "data/t/0/00000000000000000000.jsonl.zst?uploadId=u", "", faults.OpAbortMultipartUpload, faults.KindData},
		{"DELETE", w + "MANIFEST.json", "", faults.OpDeleteObject, faults.KindManifest},
		{"POST", "/b?delete", "", faults.OpDeleteObjects, faults.KindOther},
		{"GET", w + "plan.json?x-id=GetObject", "", faults.OpGetObject, faults.KindPlan},
		{"GET", w + "plan.json?uploadId=u", "", faults.OpOther, faults.KindPlan},
		{"HEAD", w + "data/t/0/00000000000000000000.jsonl.zst", "", faults.OpHeadObject, faults.KindData},
		{"GET", "/b?list-type=2&prefix=pre%2F", "", faults.OpListObjects, faults.KindOther},
		{"GET", "/b", "", faults.OpListObjects, faults.KindOther},
		{"GET", "/b?location", "", faults.OpOther, faults.KindOther},
		{"HEAD", "/b", "", faults.OpOther, faults.KindOther},
		{"GET", "/b/notes/data/x.txt", "", faults.OpGetObject, faults.KindOther},
	} {
		r := httptest.NewRequest(tc.method, tc.target, http.NoBody)
		if tc.header != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.header)
		}
		got := faults.ParseRequest(r)
		if got.Op != tc.op || got.Kind != tc.kind || got.Bucket != "b" {
			t.Errorf("%s %s: got %s %s in %q, want %s %s in b", tc.method, tc.target, got.Op, got.Kind, got.Bucket, tc.op, tc.kind)
		}
	}
}
