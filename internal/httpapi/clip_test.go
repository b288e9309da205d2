package httpapi

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClipKeepsShortText(t *testing.T) {
	if got := clip("/v1/me", 256); got != "/v1/me" {
		t.Errorf("clip = %q, want the text unchanged", got)
	}
}

func TestClipCutsBeforeEncodedByte(t *testing.T) {
	escaped := "/v1/x" + strings.Repeat("%E2%82%AC", 40)
	for max := 250; max <= 260; max++ {
		got := clip(escaped, max)
		head, _, ok := strings.Cut(got, "... (")
		if !ok {
			t.Fatalf("clip(%d) = %q, want a cut", max, got)
		}
		if strings.HasSuffix(head, "%") || (len(head) >= 2 && head[len(head)-2] == '%') {
			t.Errorf("clip(%d) ends in a partial escape: %q", max, head[len(head)-4:])
		}
		if len(head) > max {
			t.Errorf("clip(%d) kept %d bytes", max, len(head))
		}
	}
}

func TestClipCutsBeforeCharacter(t *testing.T) {
	text := strings.Repeat("€", 100)
	got := clip(text, 256)
	if !utf8.ValidString(got) {
		t.Errorf("clip split a character: %q", got)
	}
	if !strings.HasSuffix(got, "... (300 bytes)") {
		t.Errorf("clip = %q, want the length", got)
	}
}
