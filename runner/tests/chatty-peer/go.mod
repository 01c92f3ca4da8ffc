module meshgate/chatty-peer

go 1.22
