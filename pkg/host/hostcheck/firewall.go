package hostcheck

import (
	"encoding/json"
	"fmt"
	"sort"
)

// DroppingInputChains returns the input-hook base chains of a ruleset (the output of
// `nft -j list ruleset`) whose policy is drop and that have no `ct status dnat accept` rule:
// redirected connections traverse the input hook addressed to the sensor's port, and such a
// chain drops them. Each chain is named "FAMILY TABLE CHAIN". A drop rule at the end of a chain
// with policy accept is not detected.
func DroppingInputChains(rulesetJSON []byte) ([]string, error) {
	return droppingInputChains(rulesetJSON, acceptsDNAT)
}

// DroppingInputChainsMark is DroppingInputChains for tproxy mode, whose packets are untracked
// after the SYN and carry a mark: a chain is fine when it has `meta mark MARK accept`.
func DroppingInputChainsMark(rulesetJSON []byte, mark uint32) ([]string, error) {
	return droppingInputChains(rulesetJSON, func(expr []map[string]json.RawMessage) bool { return acceptsMark(expr, mark) })
}

func droppingInputChains(rulesetJSON []byte, lets func([]map[string]json.RawMessage) bool) ([]string, error) {
	var doc struct {
		Nftables []struct {
			Chain *struct {
				Family, Table, Name, Hook, Policy string
			} `json:"chain"`
			Rule *struct {
				Family, Table, Chain string
				Expr                 []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(rulesetJSON, &doc); err != nil {
		return nil, fmt.Errorf("nft ruleset: %w", err)
	}
	dropping := map[string]bool{}
	for _, o := range doc.Nftables {
		if c := o.Chain; c != nil && c.Hook == "input" && c.Policy == "drop" {
			dropping[c.Family+" "+c.Table+" "+c.Name] = true
		}
	}
	for _, o := range doc.Nftables {
		if r := o.Rule; r != nil && lets(r.Expr) {
			delete(dropping, r.Family+" "+r.Table+" "+r.Chain)
		}
	}
	out := make([]string, 0, len(dropping))
	for c := range dropping {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// acceptsDNAT recognises `ct status dnat [counter] accept` (also with more status bits).
func acceptsDNAT(expr []map[string]json.RawMessage) bool {
	matched, accepts := false, false
	for _, e := range expr {
		if raw, ok := e["match"]; ok {
			var m struct {
				Op   string
				Left struct {
					Ct *struct{ Key string } `json:"ct"`
				}
				Right json.RawMessage
			}
			if json.Unmarshal(raw, &m) == nil && m.Left.Ct != nil && m.Left.Ct.Key == "status" &&
				(m.Op == "in" || m.Op == "==") && mentions(m.Right, "dnat") {
				matched = true
			}
		}
		if _, ok := e["accept"]; ok {
			accepts = true
		}
	}
	return matched && accepts
}

// acceptsMark recognises `meta mark MARK [counter] accept`. A masked match is not recognised:
// the check then warns, which errs on the side of saying too much.
func acceptsMark(expr []map[string]json.RawMessage, mark uint32) bool {
	matched, accepts := false, false
	for _, e := range expr {
		if raw, ok := e["match"]; ok {
			var m struct {
				Op   string
				Left struct {
					Meta *struct{ Key string } `json:"meta"`
				}
				Right json.RawMessage
			}
			var v uint32
			if json.Unmarshal(raw, &m) == nil && m.Left.Meta != nil && m.Left.Meta.Key == "mark" &&
				m.Op == "==" && json.Unmarshal(m.Right, &v) == nil && v == mark {
				matched = true
			}
		}
		if _, ok := e["accept"]; ok {
			accepts = true
		}
	}
	return matched && accepts
}

// mentions reports whether a JSON value is the string s or a list or set holding it.
func mentions(raw json.RawMessage, s string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == s
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		for _, v := range list {
			if mentions(v, s) {
				return true
			}
		}
		return false
	}
	var set struct{ Set []json.RawMessage }
	if json.Unmarshal(raw, &set) == nil {
		for _, v := range set.Set {
			if mentions(v, s) {
				return true
			}
		}
	}
	return false
}
