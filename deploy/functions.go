package deploy

import (
	"fmt"
	"maps"
)

// FunctionsTemplate is pipeline.yaml's AWS Lambda variant: the same
// topology, the three handlers as functions behind SQS event source
// mappings. It is deployed in pipeline.yaml's place, beside data.yaml.
const FunctionsTemplate = "functions.yaml"

// FunctionResources are the functions' logical ids, by handler.
var FunctionResources = map[string]string{
	"billing":      "BillingFunction",
	"notification": "NotificationFunction",
	"inventory":    "InventoryFunction",
}

// SampleFunctionCode is where the sample's functions.yaml finds the zip of
// `make lambda`.
var SampleFunctionCode = map[string]string{"CodeS3Bucket": "prod-orderpipe-artifacts", "CodeS3Key": "lambda/bootstrap.zip"}

// Functions renders functions.yaml in d, in pipeline.yaml's place: with what
// the parent passes pipeline.yaml (the data stack's outputs, the shared
// settings) for each parameter functions.yaml declares too, and extra for
// the rest (the code's location, the Lambda settings); defaults otherwise.
func (d *Deployment) Functions(extra map[string]string) (*Stack, error) {
	t, err := LoadTemplate(FunctionsTemplate)
	if err != nil {
		return nil, err
	}
	pipe, err := d.Pipeline()
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for _, k := range t.Parameters.Keys() {
		if v, ok := pipe.Given[k]; ok {
			params[k] = v
		}
	}
	maps.Copy(params, extra)
	st, err := d.newStack(t, fmt.Sprintf("%s-Functions-%s", d.Parent.Name, sampleID("Functions", 12)), params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", FunctionsTemplate, err)
	}
	return st, nil
}

// FunctionEnvironment is a function's environment variables, evaluated.
func (st *Stack) FunctionEnvironment(logical string) (map[string]string, error) {
	p, err := st.Properties(logical)
	if err != nil {
		return nil, err
	}
	vars := p.Map("Environment").Map("Variables")
	out := make(map[string]string, vars.Len())
	for _, k := range vars.Keys() {
		v, err := stringOf(vars.Get(k))
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", logical, k, err)
		}
		out[k] = v
	}
	return out, nil
}
