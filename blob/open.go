package blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Open returns the Bucket rooted at a folder URL: "s3://bucket/some/prefix" (the rest of the
// S3 settings, credentials among them, come from s3cfg; its Bucket and Prefix are replaced),
// "file:///abs/dir", or a plain directory path.
func Open(ctx context.Context, folder string, s3cfg S3Config) (Bucket, error) {
	u, err := url.Parse(folder)
	if err != nil {
		return nil, fmt.Errorf("parse store URL %q: %w", folder, err)
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("store URL %q names no bucket", folder)
		}
		s3cfg.Bucket, s3cfg.Prefix = u.Host, strings.Trim(u.Path, "/")
		return NewS3(ctx, s3cfg)
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store URL %q: file URLs name no host", folder)
		}
		return NewLocal(u.Path)
	case "":
		if folder == "" {
			return nil, errors.New("empty store URL")
		}
		return NewLocal(folder)
	default:
		return nil, fmt.Errorf("store URL %q: scheme %q is not s3 or file", folder, u.Scheme)
	}
}

// SplitURL splits an object URL (or path) into its folder and the object's name, so that
// the folder can be opened with Open and the object read by name.
func SplitURL(object string) (folder, name string) {
	i := strings.LastIndex(object, "/")
	if i < 0 {
		return ".", object
	}
	folder = object[:i]
	if folder == "" || strings.HasSuffix(folder, "://") {
		folder += "/" // the root of the file system, not the current directory
	}
	return folder, object[i+1:]
}
