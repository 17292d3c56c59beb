package runner

// WithoutCredentials is withoutCredentials, for the tests of runner_test.
var WithoutCredentials = withoutCredentials
