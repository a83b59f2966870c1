package load

import (
	"strings"
	"sync"
	"testing"
)

const csvText = "scriptId,name\ns-1,one\ns-2,two\ns-3,three\n"

func TestDataShared(t *testing.T) {
	d, err := ReadData(strings.NewReader(csvText), DataShared)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 3 || d.Columns()["name"] != 1 {
		t.Fatalf("len %d, columns %v", d.Len(), d.Columns())
	}
	// One cursor for all threads, recycling at the end of the file.
	var got []string
	for _, th := range []int{1, 2, 1, 3, 2} {
		got = append(got, d.Next(th)[0])
	}
	if want := "s-1 s-2 s-3 s-1 s-2"; strings.Join(got, " ") != want {
		t.Fatalf("shared rows %v, want %s", got, want)
	}
}

func TestDataPerThread(t *testing.T) {
	d, err := ReadData(strings.NewReader(csvText), DataPerThread)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, th := range []int{1, 2, 1, 1, 1, 2} {
		got = append(got, d.Next(th)[0])
	}
	if want := "s-1 s-1 s-2 s-3 s-1 s-2"; strings.Join(got, " ") != want {
		t.Fatalf("per-thread rows %v, want %s", got, want)
	}
}

func TestDataSharedConcurrent(t *testing.T) {
	d, _ := ReadData(strings.NewReader(csvText), DataShared)
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for th := range 6 {
		wg.Go(func() {
			for range 50 {
				row := d.Next(th)
				mu.Lock()
				counts[row[0]]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// 300 rows taken from one cursor: each of the 3 rows exactly 100 times.
	for _, id := range []string{"s-1", "s-2", "s-3"} {
		if counts[id] != 100 {
			t.Fatalf("counts %v", counts)
		}
	}
}

func TestDataErrors(t *testing.T) {
	for text, want := range map[string]string{
		"":             "empty CSV",
		"a,b\n":        "no data rows",
		"a,a\n1,2\n":   "appears twice",
		"a,\n1,2\n":    "no name",
		"a,b\n1,2,3\n": "wrong number of fields",
	} {
		_, err := ReadData(strings.NewReader(text), DataShared)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if m, err := ParseDataMode("per-thread"); err != nil || m != DataPerThread {
		t.Error(m, err)
	}
	if _, err := ParseDataMode("x"); err == nil {
		t.Error("bad mode accepted")
	}
}
