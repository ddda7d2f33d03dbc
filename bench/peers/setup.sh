#!/usr/bin/env bash
# The peers that make bench-peers runs beside karch, set up under $KARCHDEV_CACHE without
# root: Debian's kcat and its two libraries unpacked from their packages, and the OSO
# engine's driver (bench/peers/oso) built with cargo from crates.io. Prints the two paths
# as make variables.
set -euo pipefail
cache=${KARCHDEV_CACHE:?}
here=$(cd "$(dirname "$0")" && pwd)

kcat=$cache/kcat/kcat
if [[ ! -x $kcat ]]; then
  if command -v kcat >/dev/null; then
    kcat=$(command -v kcat)
  else
    work=$(mktemp -d)
    (cd "$work" && apt-get download kcat librdkafka1 libyajl2 >&2)
    rm -rf "$cache/kcat" && mkdir -p "$cache/kcat"
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$cache/kcat/root"; done
    rm -rf "$work"
    # A wrapper, so that the unpacked kcat finds the unpacked libraries.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' \
      "$cache/kcat/root/usr/lib/x86_64-linux-gnu" "$cache/kcat/root/usr/bin/kcat" >"$kcat"
    chmod +x "$kcat"
  fi
fi
"$kcat" -V >/dev/null

# The first build fetches and compiles the engine's crates: about five minutes on 2 cores.
export CARGO_TARGET_DIR=$cache/oso-target
cargo build --release --locked --quiet --manifest-path "$here/oso/Cargo.toml" >&2
echo "KCAT=$kcat"
echo "OSO=$CARGO_TARGET_DIR/release/oso-peer"
