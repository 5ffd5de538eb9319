//go:build !linux

package file

import "os"

// pageCache drops written pages from the page cache on Linux; elsewhere it
// does nothing.
type pageCache struct{}

func (p *pageCache) wrote(f *os.File, size int64) {}
func (p *pageCache) synced(f *os.File)            {}
func (p *pageCache) settle()                      {}
