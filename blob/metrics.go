package blob

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WithMetrics wraps b so that every call counts in reg: requests, failures and latency by
// operation. A missing object, a lost conditional create and a cancelled context are
// answers, not failures, so they are not counted as failures (an alert on the failure rate
// should mean the store is in trouble). Get's latency is the time to open the object, not to
// read it.
func WithMetrics(b Bucket, reg prometheus.Registerer) Bucket {
	m := &metricBucket{
		bucket: b,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karch_store_requests_total", Help: "Object store calls, by operation.",
		}, []string{"operation"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karch_store_request_failures_total", Help: "Object store calls that failed, by operation.",
		}, []string{"operation"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "karch_store_request_duration_seconds", Help: "Latency of object store calls, by operation.",
			Buckets: []float64{0.005, 0.02, 0.1, 0.5, 2, 10, 60, 300},
		}, []string{"operation"}),
		putBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karch_store_put_bytes_total", Help: "Bytes written by successful puts.",
		}),
	}
	for _, op := range []string{"put", "get", "head", "list"} {
		m.requests.WithLabelValues(op)
		m.failures.WithLabelValues(op)
	}
	reg.MustRegister(m.requests, m.failures, m.duration, m.putBytes)
	return m
}

type metricBucket struct {
	bucket   Bucket
	requests *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
	putBytes prometheus.Counter
}

var _ Bucket = (*metricBucket)(nil)

func (m *metricBucket) Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error) {
	done := m.start("put")
	info, err := m.bucket.Put(ctx, key, r, opts)
	done(ctx, err)
	if err == nil {
		m.putBytes.Add(float64(info.Size))
	}
	return info, err
}

func (m *metricBucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	done := m.start("get")
	rc, err := m.bucket.Get(ctx, key)
	done(ctx, err)
	return rc, err
}

func (m *metricBucket) Head(ctx context.Context, key string) (ObjectInfo, error) {
	done := m.start("head")
	info, err := m.bucket.Head(ctx, key)
	done(ctx, err)
	return info, err
}

func (m *metricBucket) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	done := m.start("list")
	var fnErr error
	err := m.bucket.List(ctx, prefix, func(o ObjectInfo) error {
		fnErr = fn(o)
		return fnErr
	})
	if err != nil && errors.Is(err, fnErr) {
		done(ctx, nil) // the caller stopped the listing; the store did not fail
	} else {
		done(ctx, err)
	}
	return err
}

// start counts a call and returns the function that records how it ended.
func (m *metricBucket) start(op string) func(context.Context, error) {
	m.requests.WithLabelValues(op).Inc()
	began := time.Now()
	return func(ctx context.Context, err error) {
		m.duration.WithLabelValues(op).Observe(time.Since(began).Seconds())
		if err != nil && !IsNotFound(err) && !IsExists(err) && ctx.Err() == nil {
			m.failures.WithLabelValues(op).Inc()
		}
	}
}
