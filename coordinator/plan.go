package coordinator

import (
	"cmp"
	"slices"

	"github.com/karch-archive/karch/archive"
)

// BuildPlan splits the window's ranges into pieces of at most pieceRecords offsets and deals
// them to at most maxShards shards, worst-fit decreasing by size (Gobblin's packing): the
// largest piece goes to the least loaded shard. A hot partition becomes several pieces and
// so spreads over several shards. The result depends only on its inputs.
func BuildPlan(base archive.Plan, ranges []archive.Range, pieceRecords int64, maxShards int) archive.Plan {
	p := base
	p.Format = archive.PlanFormat
	p.Ranges = ranges
	pieces := splitRanges(ranges, pieceRecords)
	n := min(maxShards, len(pieces))
	p.Shards = make([]archive.ShardPlan, n)
	load := make([]int64, n)
	for i := range p.Shards {
		p.Shards[i] = archive.ShardPlan{Index: i, Pieces: []archive.Piece{}}
	}
	slices.SortStableFunc(pieces, func(a, b archive.Piece) int { return cmp.Compare(b.End-b.First, a.End-a.First) })
	for _, pc := range pieces {
		i := slices.Index(load, slices.Min(load))
		p.Shards[i].Pieces = append(p.Shards[i].Pieces, pc)
		load[i] += pc.End - pc.First
	}
	for i := range p.Shards {
		slices.SortFunc(p.Shards[i].Pieces, func(a, b archive.Piece) int {
			return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.First, b.First))
		})
	}
	return p
}

// splitRanges cuts each non-empty range into pieces of at most per offsets.
func splitRanges(ranges []archive.Range, per int64) []archive.Piece {
	var out []archive.Piece
	for _, r := range ranges {
		for first := r.First; first < r.End; first += per {
			out = append(out, archive.Piece{
				Key: archive.PieceKey(r.Topic, r.Partition, first), Topic: r.Topic, Partition: r.Partition,
				First: first, End: min(first+per, r.End),
			})
		}
	}
	return out
}
