package tlog

// Indexed is a sequenced entry with its index in the log.
type Indexed struct {
	Index uint64
	Entry *Entry
}
