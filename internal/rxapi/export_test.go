package rxapi

// Patterns are the patterns a's handler routes, for the test that holds
// them to api/openapi.yaml.
func Patterns(a *API) []string { return a.routes().Patterns() }
