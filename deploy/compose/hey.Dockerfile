# hey (github.com/rakyll/hey), the HTTP load generator, to send the demo
# nginx steady traffic.
FROM golang:1.26-alpine AS build
RUN CGO_ENABLED=0 go install github.com/rakyll/hey@v0.1.4

FROM alpine:3.22
COPY --from=build /go/bin/hey /usr/local/bin/hey
ENTRYPOINT ["/usr/local/bin/hey"]
