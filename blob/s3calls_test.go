package blob_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/karch-archive/karch/blob"
	"github.com/karch-archive/karch/failure"
)

// stall is the fakeS3 status of a request that is never answered.
const stall = -1

// fakeS3 answers every S3 request the backend makes with a minimal success, except the
// operation named fail, which gets status and an S3 error body with code; status 0 resets
// the connection instead. It counts AbortMultipartUpload calls.
type fakeS3 struct {
	fail, code string
	status     int
	aborts     atomic.Int32
}

// operation names a request the way S3's API does.
func operation(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodHead:
		return "head"
	case r.Method == http.MethodGet && q.Has("list-type"):
		return "list"
	case r.Method == http.MethodGet:
		return "get"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "part"
	case r.Method == http.MethodPut:
		return "put"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "create"
	case r.Method == http.MethodPost:
		return "complete"
	default:
		return "abort"
	}
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	op := operation(r)
	switch {
	case op == "abort":
		f.aborts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	case op == f.fail && f.status == 0:
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	case op == f.fail && f.status == stall:
		<-r.Context().Done() // never answers, as a hung server
	case op == f.fail:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(f.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted</Message><RequestId>r1</RequestId></Error>`, f.code)
	default:
		succeed(w, op)
	}
}

func succeed(w http.ResponseWriter, op string) {
	w.Header().Set("ETag", `"e"`)
	switch op {
	case "list":
		fmt.Fprint(w, `<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>`)
	case "create":
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case "complete":
		fmt.Fprint(w, `<CompleteMultipartUploadResult><ETag>"e"</ETag></CompleteMultipartUploadResult>`)
	case "get":
		fmt.Fprint(w, "data")
	}
}

// call runs the Bucket method that makes request op: "create", "part" and "complete" are
// steps of a multipart Put.
func call(ctx context.Context, b blob.Bucket, op string) error {
	var err error
	switch op {
	case "get":
		var rc io.ReadCloser
		if rc, err = b.Get(ctx, "k"); err == nil {
			rc.Close()
		}
	case "head":
		_, err = b.Head(ctx, "k")
	case "list":
		err = b.List(ctx, "", func(blob.ObjectInfo) error { return nil })
	case "put":
		_, err = b.Put(ctx, "k", strings.NewReader("small"), blob.PutOptions{IfAbsent: true})
	default:
		_, err = b.Put(ctx, "k", bytes.NewReader(make([]byte, 5<<20+1)), blob.PutOptions{IfAbsent: true})
	}
	return err
}

// TestS3CallsClassifyErrors drives every S3 request the backend makes through the real SDK
// against a scripted server, and checks that each one's failures are classified: a path that
// skipped classify would leave AccessDenied retryable.
func TestS3CallsClassifyErrors(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "1") // judge the answer, not the SDK's retries of it
	type want struct{ notFound, exists, permanent bool }
	cases := []struct {
		status int
		code   string
		ops    []string
		want   want
	}{
		{403, "AccessDenied", []string{"get", "head", "list", "put", "create", "part", "complete"}, want{permanent: true}},
		{400, "InvalidArgument", []string{"get", "head", "list", "put", "create", "part", "complete"}, want{permanent: true}},
		{404, "NoSuchBucket", []string{"get", "list", "put", "create", "part", "complete"}, want{permanent: true}},
		{503, "SlowDown", []string{"get", "head", "list", "put", "create", "part", "complete"}, want{}},
		{0, "connection reset", []string{"get", "head", "list", "put", "create", "part", "complete"}, want{}},
		{404, "NoSuchKey", []string{"get", "head"}, want{notFound: true}},
		{404, "NoSuchUpload", []string{"part", "complete"}, want{}},
		{412, "PreconditionFailed", []string{"put", "complete"}, want{exists: true}},
		{409, "ConditionalRequestConflict", []string{"put", "complete"}, want{}},
	}
	for _, tc := range cases {
		for _, op := range tc.ops {
			t.Run(fmt.Sprintf("%s/%d %s", op, tc.status, tc.code), func(t *testing.T) {
				fake := &fakeS3{fail: op, status: tc.status, code: tc.code}
				srv := httptest.NewServer(fake)
				defer srv.Close()
				b, err := blob.NewS3(context.Background(), blob.S3Config{Endpoint: srv.URL, Region: "us-east-1", PathStyle: true,
					Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s", PartSize: 5 << 20})
				if err != nil {
					t.Fatal(err)
				}
				err = call(context.Background(), b, op)
				got := want{blob.IsNotFound(err), blob.IsExists(err), failure.IsPermanent(err)}
				if err == nil || got != tc.want {
					t.Fatalf("error %v: got %+v, want %+v", err, got, tc.want)
				}
				if (op == "part" || op == "complete") && fake.aborts.Load() != 1 {
					t.Fatalf("the failed multipart upload was aborted %d times, want 1", fake.aborts.Load())
				}
			})
		}
	}
}

// TestS3CallsGiveUpOnAStalledServer: a request the server never answers fails, retryably,
// once the response timeout passes, rather than holding the caller for ever. The SDK sets no
// timeout of its own; the chaos scenario s3-stalled-requests wedged a run on it.
func TestS3CallsGiveUpOnAStalledServer(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	for _, op := range []string{"get", "head", "list", "put", "create", "part", "complete"} {
		t.Run(op, func(t *testing.T) {
			srv := httptest.NewServer(&fakeS3{fail: op, status: stall})
			defer srv.Close()
			b, err := blob.NewS3(context.Background(), blob.S3Config{Endpoint: srv.URL, Region: "us-east-1", PathStyle: true,
				Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s", PartSize: 5 << 20, ResponseTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = call(ctx, b, op)
			if err == nil || ctx.Err() != nil || failure.IsPermanent(err) {
				t.Fatalf("error %v (context: %v): want a retryable error before the context ends", err, ctx.Err())
			}
		})
	}
}
