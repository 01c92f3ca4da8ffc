//go:build golibp2p_pre045

package main

// go-libp2p before v0.45 logs through go-log/v2 (zap; v0.44's gologshim takes
// no application handler), so the NAT manager's discovery error stays in its
// log and port_mapping_failed says only that the deadline passed
// (compat_natlog.go has the capture).
const natLogCaptured = false
