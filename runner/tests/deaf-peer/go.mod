module meshgate/deaf-peer

go 1.22
