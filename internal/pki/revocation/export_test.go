package revocation

// Waiting is how many checks wait for an OCSP answer now.
func (c *Checker) Waiting() int { return int(c.waiting.Load()) }
