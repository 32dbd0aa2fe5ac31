package tlog

import (
	"fmt"

	"github.com/nuskha/nuskha/internal/hsm"
	"github.com/nuskha/nuskha/internal/nationalid"
)

// pseudonymDomain prefixes what is MACed, so that the pseudonym key, were
// it ever used for anything else, could not be made to yield a pseudonym.
const pseudonymDomain = "nuskha-patient/v1:"

// Pseudonyms turns national ids into patients' pseudonyms: HMAC-SHA256,
// under a key held in custody (a secret key on the HSM token, or an
// encrypted key file for the embedded default), of the id in its canonical
// ten-digit form. The same person has the same pseudonym in every entry,
// so an auditor can follow one patient's records; without the key nobody
// can test the billion or so valid ids against a pseudonym.
type Pseudonyms struct{ mac hsm.MAC }

// NewPseudonyms uses the key mac (hsm.Manager.OpenMAC).
func NewPseudonyms(mac hsm.MAC) *Pseudonyms { return &Pseudonyms{mac: mac} }

// Of returns the pseudonym of nationalID, in any form nationalid.Parse
// accepts (Persian digits, dashes, a dropped leading zero): every way of
// writing one id gives one pseudonym. An invalid id is an error
// (errs.InvalidNID), as is a key that cannot be used.
func (p *Pseudonyms) Of(nationalID string) (Pseudonym, error) {
	n, err := nationalid.Parse(nationalID)
	if err != nil {
		return Pseudonym{}, err
	}
	sum, err := p.mac.Sum([]byte(pseudonymDomain + n))
	if err != nil {
		return Pseudonym{}, fmt.Errorf("tlog: pseudonym: %w", err)
	}
	return Pseudonym(sum), nil
}
