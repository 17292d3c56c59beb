#!/usr/bin/env bash
# Regenerates the Go code of the plugin protocol from v1/upshift.proto.
# Needs protoc (apt: protobuf-compiler) and the two Go generators:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# (protoc-gen-go matches google.golang.org/protobuf in go.mod.)
set -euo pipefail
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc \
  --proto_path=v1 \
  --go_out=v1 --go_opt=paths=source_relative \
  --go-grpc_out=v1 --go-grpc_opt=paths=source_relative \
  upshift.proto
