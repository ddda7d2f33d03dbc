package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
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

// skew forwards the request signed a.delay later, and answers with the server's Date moved
// a.delay earlier.
func (x *exchange) skew(a Action) {
	at, err := time.Parse(amzDate, x.r.Header.Get("X-Amz-Date"))
	if err != nil {
		x.badGateway(fmt.Errorf("faults: skew %s: X-Amz-Date: %w", x.r.URL.Path, err))
		return
	}
	x.r.Header.Set("X-Amz-Date", at.Add(a.delay).Format(amzDate))
	if err := resign(x.r, a.creds, a.region); err != nil {
		x.badGateway(err)
		return
	}
	resp, err := x.roundTrip(x.r.Body)
	if err != nil {
		x.badGateway(err)
		return
	}
	defer resp.Body.Close()
	if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		resp.Header.Set("Date", date.Add(-a.delay).UTC().Format(http.TimeFormat))
	}
	x.upstream = resp.StatusCode
	x.applied(a, fmt.Sprintf("status=%d", resp.StatusCode))
	x.writeHeader(resp)
	_, _ = io.Copy(x.w, resp.Body)
}

const amzDate = "20060102T150405Z"

// resign replaces r's SigV4 signature with one over its headers as they are now.
func resign(r *http.Request, creds aws.Credentials, region string) error {
	at, err := time.Parse(amzDate, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("faults: re-sign %s: X-Amz-Date: %w", r.URL.Path, err)
	}
	signed := r.Clone(context.Background())
	signed.URL.Scheme, signed.URL.Host, signed.Host = "http", r.Host, r.Host
	// Sign what the client signed, no more: the others (hop-by-hop headers among them) may
	// not reach the server as they are here.
	keep := map[string]bool{}
	if _, list, ok := strings.Cut(r.Header.Get("Authorization"), "SignedHeaders="); ok {
		list, _, _ = strings.Cut(list, ",")
		for _, h := range strings.Split(list, ";") {
			keep[http.CanonicalHeaderKey(h)] = true
		}
	}
	for h := range signed.Header {
		if !keep[h] {
			signed.Header.Del(h)
		}
	}
	if err := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }).SignHTTP(context.Background(), creds, signed, r.Header.Get("X-Amz-Content-Sha256"), "s3", region, at); err != nil {
		return fmt.Errorf("faults: re-sign %s: %w", r.URL.Path, err)
	}
	r.Header.Set("Authorization", signed.Header.Get("Authorization"))
	return nil
}
