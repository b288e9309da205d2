package httpapi

import (
	"encoding/json"
	"testing"
)

func TestHasLoneSurrogate(t *testing.T) {
	for _, tc := range []struct {
		json string
		want bool
	}{
		{`{"reason":"plain"}`, false},
		{`{"reason":"a\u00e9b"}`, false},
		{`{"reason":"\ud83d\ude00"}`, false},    // a pair: U+1F600
		{`{"reason":"\uD83D\uDE00 x"}`, false},  // upper case
		{`{"reason":"a\\ud800b"}`, false},       // an escaped backslash, then text
		{`{"reason":"a\\\ud83d\ude00"}`, false}, // a backslash, then a pair
		{`{"reason":"a\ud800b"}`, true},
		{`{"reason":"a\udc00b"}`, true},
		{`{"reason":"\ude00\ud83d"}`, true},  // a pair in the wrong order
		{`{"reason":"\ud83d\u0041"}`, true},  // a high half, then not a low one
		{`{"reason":"\ud83d\\ude00"}`, true}, // a high half, then an escaped backslash
		{`{"reason":"x\ud800"}`, true},       // at the end of a string
		{`{"reason":"\ud83d\ud83d\ude00"}`, true},
		{`"\ud800`, true}, // at the end of the text
		{`"\u12`, false},  // too short: a syntax error, left to the decoder
	} {
		if got := hasLoneSurrogate([]byte(tc.json)); got != tc.want {
			t.Errorf("hasLoneSurrogate(%s) = %t, want %t", tc.json, got, tc.want)
		}
	}
}

// TestLoneSurrogateMatchesDecoder checks the scan against encoding/json:
// a text the scan accepts decodes without U+FFFD, unless it escapes
// U+FFFD itself.
func TestLoneSurrogateMatchesDecoder(t *testing.T) {
	for _, text := range []string{`"\ud800"`, `"\udfff"`, `"\ud83d\ude00"`, `"\\ud800"`, `"a\ud7ff\ue000"`} {
		var s string
		if err := json.Unmarshal([]byte(text), &s); err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		replaced := false
		for _, r := range s {
			replaced = replaced || r == '\uFFFD'
		}
		if replaced != hasLoneSurrogate([]byte(text)) {
			t.Errorf("%s: decoded with U+FFFD %t, scan says lone %t", text, replaced, hasLoneSurrogate([]byte(text)))
		}
	}
}
