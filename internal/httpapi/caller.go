package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse-authz/gatehouse/internal/authn"
	"github.com/gatehouse-authz/gatehouse/internal/authz"
)

// MaxReasonLength bounds the reason a caller gives for a change, in bytes.
const MaxReasonLength = 1024

// maxUserAgentLength bounds the user agent kept in the audit log, in bytes.
const maxUserAgentLength = 512

// caller returns the audit identity of a change request.
func (a *api) caller(r *http.Request, p *authn.Principal, reason string) authz.Caller {
	return authz.Caller{
		Ref:       p.Ref,
		Issuer:    p.Issuer,
		TokenID:   p.TokenID,
		ClientIP:  a.clientIP(r),
		UserAgent: truncateUTF8(printable(r.UserAgent()), maxUserAgentLength),
		RequestID: RequestID(r.Context()),
		Reason:    reason,
	}
}

// validReason reports whether reason is acceptable: at most MaxReasonLength
// bytes of valid UTF-8 without control or bidirectional formatting
// characters, which could disguise the text where it is shown.
func validReason(reason string) bool {
	if len(reason) > MaxReasonLength || !utf8.ValidString(reason) {
		return false
	}
	for _, r := range reason {
		if unsafeRune(r) {
			return false
		}
	}
	return true
}

// unsafeRune reports whether r is a control character (C0, DEL or C1) or a
// bidirectional formatting character.
func unsafeRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r == 0x200e || r == 0x200f || r == 0x061c:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// clientIP returns the address of the client. X-Forwarded-For is honoured
// only when the direct peer is a trusted proxy; then the rightmost address
// that is not itself a trusted proxy is the client, because each proxy
// appends the address it received the request from and only trusted ones
// can be believed.
func (a *api) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !a.trusted(peer) {
		return peer.String()
	}

	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = addr.Unmap()
		if !a.trusted(client) {
			break
		}
	}
	return client.String()
}

func (a *api) trusted(addr netip.Addr) bool {
	for _, p := range a.trustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// printable returns s as valid UTF-8 without control or bidirectional
// formatting characters, because headers may carry any bytes and the audit
// log stores text that people read.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
