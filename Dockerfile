# karch: one static binary for the coordinator (`karch run`) and the shards (`karch shard`),
# on a distroless base with no shell, running as an unprivileged user.
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t karch:dev .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/karch ./cmd/karch

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/karch /karch
USER 65532:65532
ENTRYPOINT ["/karch"]
