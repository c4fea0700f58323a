package keycloak

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nhs-terminology/communities/internal/community"
)

// TestMembersOfAsksAgainForWhatDidNotFit: MembersOf sends at most 1,500
// groups a call, asks again for the groups an answer had no room for, reads
// a group too large for any answer page by page, and leaves out groups
// that do not exist.
func TestMembersOfAsksAgainForWhatDidNotFit(t *testing.T) {
	const room = 3 // members the fake extension answers a call
	size := func(id string) int {
		switch {
		case id == "big":
			return 5
		case strings.HasPrefix(id, "gone"):
			return -1
		case strings.HasSuffix(id, "7"):
			return 2
		}
		return 0
	}
	var calls, pages, most atomic.Int32
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+membersPath:
			calls.Add(1)
			var q membersQuery
			if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Max != membersPerCall {
				t.Errorf("query %+v %v", q, err)
			}
			if n := int32(len(q.Groups)); n > most.Load() {
				most.Store(n)
			}
			a := membersAnswer{Members: map[string][]community.Member{}, Missing: []string{}, More: []string{}}
			left := room
			for _, id := range q.Groups {
				n := size(id)
				switch {
				case len(a.More) > 0 || n > left:
					a.More = append(a.More, id)
				case n < 0:
					a.Missing = append(a.Missing, id)
				default:
					left -= n
					a.Members[id] = []community.Member{}
					for i := range n {
						a.Members[id] = append(a.Members[id], community.Member{ID: fmt.Sprintf("%s-u%d", id, i), Username: fmt.Sprintf("u%d", i)})
					}
				}
			}
			_ = json.NewEncoder(w).Encode(a)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/groups/big/members":
			pages.Add(1)
			if r.URL.Query().Get("first") != "0" {
				fmt.Fprint(w, `[]`)
				return
			}
			fmt.Fprint(w, `[{"id":"b1","username":"x1"},{"id":"b2","username":"x2"},{"id":"b3","username":"x3"},{"id":"b4","username":"x4"},{"id":"b5","username":"x5"}]`)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	ids := []string{"big", "gone-1"}
	for i := range 3500 {
		ids = append(ids, fmt.Sprintf("g%d", i))
	}
	c := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	got, err := c.MembersOf(t.Context(), "r", ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids)-1 {
		t.Errorf("%d groups answered, want %d (all but the missing one)", len(got), len(ids)-1)
	}
	if _, ok := got["gone-1"]; ok {
		t.Error("a group that does not exist has an entry")
	}
	if len(got["big"]) != 5 || pages.Load() != 1 {
		t.Errorf("the group too large for an answer: %v, read in %d pages", got["big"], pages.Load())
	}
	for _, id := range []string{"g7", "g17", "g3497"} {
		if ms := got[id]; len(ms) != 2 || ms[1].ID != id+"-u1" || ms[1].Username != "u1" {
			t.Errorf("members of %s: %v", id, ms)
		}
	}
	if ms, ok := got["g3499"]; !ok || len(ms) != 0 {
		t.Errorf("an empty group: %v %v", ms, ok)
	}
	// 350 groups of 2 members, one a call at most (room 3): about 350 calls.
	if most.Load() > membersGroupsPerCall || calls.Load() < 350 || calls.Load() > 360 {
		t.Errorf("%d calls, at most %d groups in one", calls.Load(), most.Load())
	}
}

// TestPagedReadsRenewTheirToken: a read of many pages asks for the admin
// token before each page, so that one outliving the token renews it
// where it used to send the rest on an expired one. The fake Keycloak
// takes each token for one call only (expires_in 0 makes every token
// stale at once), as a real one would after a long read.
func TestPagedReadsRenewTheirToken(t *testing.T) {
	var mu sync.Mutex
	issued, used := 0, map[string]bool{}
	page := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/realms/r/protocol/openid-connect/token" {
			issued++
			fmt.Fprintf(w, `{"access_token":"t%d","expires_in":0}`, issued)
			return
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if used[tok] {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"HTTP 401 Unauthorized"}`)
			return
		}
		used[tok] = true
		full := r.URL.Query().Get("first") == "0"
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/groups/g/members":
			if full {
				fmt.Fprint(w, page(100, `{"id":"u","username":"u","enabled":true}`))
			} else {
				fmt.Fprint(w, page(1, `{"id":"last","username":"last","enabled":true}`))
			}
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/groups"):
			if full {
				fmt.Fprint(w, page(100, `{"id":"g","path":"/g"}`))
			} else {
				fmt.Fprint(w, `[]`)
			}
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/clients":
			if full {
				fmt.Fprint(w, page(clientsPage, `{"id":"c","clientId":"c"}`))
			} else {
				fmt.Fprint(w, `[]`)
			}
		case r.Method == http.MethodPost && r.URL.Path == "/admin/realms/r"+membersPath:
			var q membersQuery
			_ = json.NewDecoder(r.Body).Decode(&q)
			// One group an answer: the rest are "more", for another call.
			_ = json.NewEncoder(w).Encode(membersAnswer{Members: map[string][]community.Member{q.Groups[0]: {}},
				Missing: []string{}, More: q.Groups[1:]})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	ctx := context.Background()
	if found, err := cl.IsMember(ctx, "r", "g", "last"); err != nil || !found {
		t.Errorf("IsMember over two pages: %v, %v; want found", found, err)
	}
	if gs, err := cl.UserGroups(ctx, "r", "6f1c2b9e-0000-4000-8000-000000000002"); err != nil || len(gs) != 100 {
		t.Errorf("UserGroups over two pages: %d groups, %v; want 100", len(gs), err)
	}
	if _, err := cl.SystemClients(ctx, "r"); err != nil {
		t.Errorf("SystemClients over two pages: %v", err)
	}
	if m, err := cl.MembersOf(ctx, "r", []string{"a", "b", "c"}); err != nil || len(m) != 3 {
		t.Errorf("MembersOf over three calls: %d groups, %v; want 3", len(m), err)
	}
}

// TestMembersPageIsOneCall: a page of a group's members is one call that
// passes first and max on and asks for brief representations.
func TestMembersPageIsOneCall(t *testing.T) {
	var asked []url.Values
	kc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/realms/r/protocol/openid-connect/token":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Method == http.MethodGet && r.URL.Path == "/admin/realms/r/groups/g/members":
			asked = append(asked, r.URL.Query())
			fmt.Fprint(w, `[{"id":"1","username":"a","enabled":true},{"id":"2","username":"b","enabled":false}]`)
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer kc.Close()
	cl := New(Options{BaseURL: kc.URL, ClientID: "c", ClientSecret: "s", Timeout: 5 * time.Second})
	ms, err := cl.MembersPage(context.Background(), "r", "g", 150, 50)
	want := []community.Member{{ID: "1", Username: "a", Enabled: true}, {ID: "2", Username: "b"}}
	if err != nil || !slices.Equal(ms, want) {
		t.Errorf("page: %v %v, want %v", ms, err, want)
	}
	if len(asked) != 1 || asked[0].Get("first") != "150" || asked[0].Get("max") != "50" || asked[0].Get("briefRepresentation") != "true" {
		t.Errorf("asked Keycloak %q, want one call with first=150, max=50 and brief representations", asked)
	}
}
