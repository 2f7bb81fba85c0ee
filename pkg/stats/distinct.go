package stats

import (
	"math"
	"math/bits"
)

// Distinct counts distinct 64-bit hashes: exactly while it has seen at most Budget of them,
// then with HyperLogLog (Flajolet et al., 2007) at precision hllP, whose standard error is
// 1.04/sqrt(2^hllP) = 0.81 %, in 16 KiB.
type Distinct struct {
	Budget int
	set    map[uint64]struct{}
	reg    []uint8
}

const hllP = 14

// HLLStdError is the relative standard error of a count beyond the budget.
var HLLStdError = 1.04 / math.Sqrt(1<<hllP)

// NewDistinct returns a counter that is exact up to budget values.
func NewDistinct(budget int) *Distinct {
	return &Distinct{Budget: budget, set: map[uint64]struct{}{}}
}

// Add counts the value whose hash is h.
func (d *Distinct) Add(h uint64) {
	if d.reg == nil {
		d.set[h] = struct{}{}
		if len(d.set) <= d.Budget {
			return
		}
		d.reg = make([]uint8, 1<<hllP)
		for v := range d.set {
			d.hll(v)
		}
		d.set = nil
		return
	}
	d.hll(h)
}

func (d *Distinct) hll(h uint64) {
	i := h >> (64 - hllP)
	rho := uint8(bits.LeadingZeros64(h<<hllP|1<<(hllP-1)) + 1)
	if rho > d.reg[i] {
		d.reg[i] = rho
	}
}

// Exact reports whether Count is exact.
func (d *Distinct) Exact() bool { return d.reg == nil }

// Count is the number of distinct values seen, or its estimate.
func (d *Distinct) Count() uint64 {
	if d.reg == nil {
		return uint64(len(d.set))
	}
	m := float64(len(d.reg))
	sum, zeros := 0.0, 0
	for _, r := range d.reg {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if est <= 2.5*m && zeros > 0 {
		est = m * math.Log(m/float64(zeros)) // linear counting for the small range
	}
	return uint64(est + 0.5)
}

// mix64 is a 64-bit finalizer (MurmurHash3's fmix64): it spreads every input bit over the
// output, as HyperLogLog needs.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// hash2 hashes two 64-bit words.
func hash2(a, b uint64) uint64 { return mix64(mix64(a) ^ b*0x9e3779b97f4a7c15) }
