package redis

import (
	"strings"
	"testing"
)

// hashTag returns the part of key that Redis Cluster hashes, by its rule:
// the text between the first '{' and the first '}' after it, when that text
// is non-empty; otherwise the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

type triple struct{ group, policy, key string }

func TestKeyLayout(t *testing.T) {
	if got := string(appendKey(nil, "rl:", "org-42", "script-writes", "org-42/s-7")); got != "rl:{org-42}script-writes\x00org-42/s-7" {
		t.Fatalf("key = %q", got)
	}
	// Triples that a naive concatenation would confuse.
	triples := []triple{
		{"a", "b", "c"}, {"a}", "b", "c"}, {"a", "}b", "c"}, {"a%7D", "b", "c"},
		{"", "b", "c"}, {"%", "b", "c"}, {"", "%b", "c"}, {"{", "b", "c"},
		{"a", "b\x00c", "d"}, {"a", "b", "c\x00d"}, {"a", "b%00c", "d"},
		{"a", "", "bc"}, {"a", "b", ""}, {"", "", ""}, {"a{b}", "c", "d"},
	}
	seen := map[string]triple{}
	for _, tr := range triples {
		k := string(appendKey(nil, "rl:", tr.group, tr.policy, tr.key))
		if prev, ok := seen[k]; ok {
			t.Errorf("%q and %q share key %q", prev, tr, k)
		}
		seen[k] = tr
		checkTag(t, tr)
	}
}

// checkTag checks that every key of tr's group hashes on a non-empty tag
// that depends on the group alone.
func checkTag(t *testing.T, tr triple) {
	t.Helper()
	k := string(appendKey(nil, "rl:", tr.group, tr.policy, tr.key))
	other := string(appendKey(nil, "rl:", tr.group, "other}{policy", "other}{key"))
	tag := hashTag(k)
	if tag == k || tag == "" {
		t.Errorf("%q: key %q has no hash tag", tr, k)
	}
	if tag != hashTag(other) {
		t.Errorf("%q: tags %q and %q differ within one group", tr, tag, hashTag(other))
	}
}

// FuzzKey checks that the encoding is injective and that the hash tag
// depends on the group only.
func FuzzKey(f *testing.F) {
	f.Add("a}", "b", "c", "a", "}b", "c")
	f.Add("", "b\x00", "c", "", "b", "\x00c")
	f.Add("%", "", "", "", "%", "")
	f.Fuzz(func(t *testing.T, g1, p1, k1, g2, p2, k2 string) {
		a := string(appendKey(nil, "p:", g1, p1, k1))
		b := string(appendKey(nil, "p:", g2, p2, k2))
		if (a == b) != (g1 == g2 && p1 == p2 && k1 == k2) {
			t.Fatalf("(%q,%q,%q) and (%q,%q,%q): keys %q %q", g1, p1, k1, g2, p2, k2, a, b)
		}
		if (hashTag(a) == hashTag(b)) != (g1 == g2) {
			t.Fatalf("groups %q %q: tags %q %q", g1, g2, hashTag(a), hashTag(b))
		}
		checkTag(t, triple{g1, p1, k1})
	})
}
