module meshgate/upnp-gateway/tests/goupnp

go 1.22

require github.com/huin/goupnp v1.3.0

require golang.org/x/sync v0.0.0-20210220032951-036812b2e83c // indirect
