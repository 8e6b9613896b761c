package identity_test

import (
	"fmt"

	"github.com/pagefleet/pagefleet/internal/identity"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func ExampleNormalize() {
	// The API validates and normalizes a profile before it stores it.
	p := spec.Identity{Name: "de-desktop", Locale: "de-DE", Timezone: "Europe/Berlin"}
	if errs := identity.Validate(&p); len(errs) > 0 {
		fmt.Println(errs)
		return
	}
	identity.Normalize(&p)
	fmt.Println(p.Locale, p.AcceptLanguage)
	// Output: de-DE de-DE,de;q=0.9
}
