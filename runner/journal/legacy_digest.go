package journal

// LegacySameDigest reports whether the legacy run (Legacy) was begun with
// digest: its journal keeps a keyed hash under the folder's own key, or,
// when an upshift before keyed digests wrote it, the digest itself.
func (s *Store) LegacySameDigest(run *Run, digest string) bool {
	return (&Journal{dir: s.dir}).SameDigest(run, digest)
}
