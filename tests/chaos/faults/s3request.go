package faults

import (
	"maps"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Op is the S3 operation of a request, as told by its method and query.
type Op string

// The operations the proxy tells apart. Anything else is OpOther.
const (
	OpPutObject               Op = "PutObject"
	OpCopyObject              Op = "CopyObject"
	OpGetObject               Op = "GetObject"
	OpHeadObject              Op = "HeadObject"
	OpListObjects             Op = "ListObjects"
	OpCreateMultipartUpload   Op = "CreateMultipartUpload"
	OpUploadPart              Op = "UploadPart"
	OpCompleteMultipartUpload Op = "CompleteMultipartUpload"
	OpAbortMultipartUpload    Op = "AbortMultipartUpload"
	OpDeleteObject            Op = "DeleteObject"
	// OpDeleteObjects is the batch delete (POST ?delete), kept apart from OpOther so that a
	// check for "no delete was sent" sees it.
	OpDeleteObjects Op = "DeleteObjects"
	OpOther         Op = "Other"
)

// Kind is what a key holds in karch's object layout (docs/FORMAT.md, "Object layout").
type Kind string

// The kinds of key. Requests without a key (listings) are KindOther.
const (
	KindPlan     Kind = "plan"     // .../plan.json
	KindReceipt  Kind = "receipt"  // .../receipts/shard-NNNNN.json
	KindManifest Kind = "manifest" // .../MANIFEST.json
	KindData     Kind = "data"     // .../data/<topic>/<partition>/<first>.jsonl.zst
	KindParquet  Kind = "parquet"  // .../data/<topic>/<partition>/<first>.parquet
	KindTable    Kind = "table"    // the Iceberg table's metadata and manifests, under _iceberg/
	KindOther    Kind = "other"
)

// Request is what the proxy knows of one S3 request; rules match on it and hooks receive it.
type Request struct {
	Op     Op
	Kind   Kind
	Bucket string
	Key    string // unescaped, without the bucket; "" for bucket-level requests
	Method string
	// RemoteAddr is the client end of the TCP connection (host:port); PeerPID turns it into
	// the process that sent the request.
	RemoteAddr string
	// IfNoneMatch is the request's If-None-Match header: "*" on a conditional create.
	IfNoneMatch string
}

// ParseRequest classifies a path-style S3 request.
func ParseRequest(r *http.Request) Request {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return Request{
		Op: OpOf(r.Method, key, r.URL.Query(), r.Header), Kind: KindOf(key),
		Bucket: bucket, Key: key, Method: r.Method, RemoteAddr: r.RemoteAddr, IfNoneMatch: r.Header.Get("If-None-Match"),
	}
}

// OpOf tells the operation of a request from its method, key, query and headers.
func OpOf(method, key string, q url.Values, h http.Header) Op {
	if q.Has("x-id") { // the AWS SDKs' name of the operation, which no server reads
		q = maps.Clone(q)
		q.Del("x-id")
	}
	if key == "" {
		return bucketOp(method, q)
	}
	switch method {
	case http.MethodGet:
		return getOp(q)
	case http.MethodHead:
		return OpHeadObject
	case http.MethodPut:
		return putOp(q, h)
	case http.MethodPost:
		return postOp(q)
	case http.MethodDelete:
		if q.Has("uploadId") {
			return OpAbortMultipartUpload
		}
		return OpDeleteObject
	}
	return OpOther
}

func bucketOp(method string, q url.Values) Op {
	switch {
	case method == http.MethodPost && q.Has("delete"):
		return OpDeleteObjects
	case method != http.MethodGet:
		return OpOther
	case q.Has("list-type"), len(q) == 0:
		return OpListObjects
	case q.Has("prefix") && !q.Has("uploads") && !q.Has("versions"):
		return OpListObjects // ListObjects v1 with a prefix
	}
	return OpOther
}

func getOp(q url.Values) Op {
	if q.Has("uploadId") || q.Has("acl") || q.Has("tagging") || q.Has("attributes") {
		return OpOther // ListParts and object sub-resources
	}
	return OpGetObject
}

func putOp(q url.Values, h http.Header) Op {
	switch {
	case q.Has("uploadId") && q.Has("partNumber"):
		return OpUploadPart
	case len(q) > 0:
		return OpOther // ?tagging, ?acl, ...
	case h.Get("X-Amz-Copy-Source") != "":
		return OpCopyObject
	}
	return OpPutObject
}

func postOp(q url.Values) Op {
	switch {
	case q.Has("uploads"):
		return OpCreateMultipartUpload
	case q.Has("uploadId"):
		return OpCompleteMultipartUpload
	}
	return OpOther
}

var receiptName = regexp.MustCompile(`^shard-[0-9]{5}\.json$`)

// KindOf tells what key holds by its base name and folder, as karch lays keys out under any
// prefix.
func KindOf(key string) Kind {
	base := path.Base(key)
	dir := "/" + path.Dir(key) + "/"
	switch {
	case key == "":
		return KindOther
	case base == "plan.json":
		return KindPlan
	case base == "MANIFEST.json":
		return KindManifest
	case receiptName.MatchString(base) && strings.HasSuffix(dir, "/receipts/"):
		return KindReceipt
	case strings.HasSuffix(base, ".jsonl.zst") && strings.Contains(dir, "/data/"):
		return KindData
	case strings.HasSuffix(base, ".parquet") && strings.Contains(dir, "/data/"):
		return KindParquet
	case strings.Contains(dir, "/_iceberg/"):
		return KindTable
	}
	return KindOther
}
