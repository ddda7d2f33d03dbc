package faults

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// IgnoreConditional makes the server see conditional creates as plain ones, as a store that
// ignores If-None-Match would: the proxy removes the header and signs the request again with
// creds for region, the client's own signing time and payload hash kept. It needs requests
// whose payload is not signed chunk by chunk, as the AWS SDKs send them.
func IgnoreConditional(creds aws.Credentials, region string) Action {
	return Action{kind: actUnconditional, creds: creds, region: region}
}

// unconditional forwards the request without its If-None-Match.
func (x *exchange) unconditional(a Action) {
	if x.r.Header.Get("If-None-Match") == "" {
		x.pass()
		return
	}
	x.applied(a, "")
	x.r.Header.Del("If-None-Match")
	if err := resign(x.r, a.creds, a.region); err != nil {
		x.badGateway(err)
		return
	}
	x.pass()
}

// resign replaces r's SigV4 signature with one over its headers as they are now.
func resign(r *http.Request, creds aws.Credentials, region string) error {
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("faults: re-sign %s: X-Amz-Date: %w", r.URL.Path, err)
	}
	signed := r.Clone(context.Background())
	signed.URL.Scheme, signed.URL.Host, signed.Host = "http", r.Host, r.Host
	signed.Header.Del("Authorization")
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, signed, r.Header.Get("X-Amz-Content-Sha256"), "s3", region, at); err != nil {
		return fmt.Errorf("faults: re-sign %s: %w", r.URL.Path, err)
	}
	r.Header.Set("Authorization", signed.Header.Get("Authorization"))
	return nil
}
