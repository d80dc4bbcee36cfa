package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// The sample deployment: one account, one region, the parent stack's
// parameters below. The rendered files show it, and the tests feed its task
// environment through the worker's own configuration check.
const (
	SampleAccount   = "123456789012"
	SampleRegion    = "eu-west-1"
	SampleStackName = "orderpipe"
)

// SampleParameters are the sample's values of the parent stack's
// parameters that have no default (and a prefix, to show where it goes).
func SampleParameters() map[string]string {
	return map[string]string{
		"VpcId":         "vpc-0123456789abcdef0",
		"Subnets":       "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
		"ImageTag":      "latest",
		"NamePrefix":    "prod-",
		"SMTPSecretArn": "arn:aws:secretsmanager:" + SampleRegion + ":" + SampleAccount + ":secret:prod-orderpipe/ses-smtp-XyZ789",
	}
}

// sampleSMTPSecret is what the sample's SES SMTP secret (created outside the
// stack) holds.
const sampleSMTPSecret = `{"username":"AKIAIOSFODNN7EXAMPLE","password":"sample-ses-smtp-password"}` //nolint:gosec // G101: AWS's documented example key and a sample password, for the rendered sample

// Deployment is the parent stack and its nested stacks as CloudFormation
// would build them: every intrinsic function evaluated, every resource's
// Ref and attributes a realistic sample value (ARNs, endpoints, generated
// names) in the sample account and region.
type Deployment struct {
	Parent   *Stack
	children map[string]*Stack // by the parent's logical id
}

// Stack is one stack of a Deployment.
type Stack struct {
	*Scope

	Name string
	// Given is the parameters the stack was given (by the parent, for a
	// nested stack), without the defaults.
	Given map[string]string
	d     *Deployment
	props map[string]*Map
}

// Render evaluates the parent template with these parameters (defaults for
// the rest), and its nested stacks with what the parent passes them.
func Render(params map[string]string) (*Deployment, error) {
	t, err := LoadTemplate(ParentTemplate)
	if err != nil {
		return nil, err
	}
	d := &Deployment{children: map[string]*Stack{}}
	d.Parent, err = d.newStack(t, SampleStackName, params)
	return d, err
}

// RenderSample is Render(SampleParameters()).
func RenderSample() (*Deployment, error) { return Render(SampleParameters()) }

func (d *Deployment) newStack(t *Template, name string, params map[string]string) (*Stack, error) {
	sc, err := NewScope(t, params, map[string]string{
		"AWS::Region": SampleRegion, "AWS::AccountId": SampleAccount, "AWS::Partition": "aws",
		"AWS::StackName": name, "AWS::URLSuffix": "amazonaws.com",
		"AWS::StackId": fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/%s", SampleRegion, SampleAccount, name, sampleID(name, 8)),
	})
	if err != nil {
		return nil, err
	}
	st := &Stack{Scope: sc, Name: name, Given: params, d: d, props: map[string]*Map{}}
	sc.RefFunc = st.ref
	sc.GetAttFunc = st.getAtt
	return st, nil
}

// Child returns the nested stack the parent declares as logical.
func (d *Deployment) Child(logical string) (*Stack, error) {
	if st, ok := d.children[logical]; ok {
		return st, nil
	}
	r, ok := d.Parent.T.Resource(logical)
	if !ok || r.Type != "AWS::CloudFormation::Stack" {
		return nil, fmt.Errorf("%s declares no nested stack %s", d.Parent.T.Name, logical)
	}
	p, err := d.Parent.Properties(logical)
	if err != nil {
		return nil, err
	}
	t, err := LoadTemplate(p.String("TemplateURL"))
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for _, k := range p.Map("Parameters").Keys() {
		v, err := stringOf(p.Map("Parameters").Get(k))
		if err != nil {
			return nil, fmt.Errorf("%s parameter %s: %w", logical, k, err)
		}
		params[k] = v
	}
	st, err := d.newStack(t, fmt.Sprintf("%s-%s-%s", d.Parent.Name, logical, strings.ToUpper(sampleID(logical, 12))), params)
	if err != nil {
		return nil, err
	}
	d.children[logical] = st
	return st, nil
}

// Data is the nested stack of the data tier (database, proxy, Redis).
func (d *Deployment) Data() (*Stack, error) { return d.Child("Data") }

// Pipeline is the nested stack of the pipeline (topic, queues, the worker's service).
func (d *Deployment) Pipeline() (*Stack, error) { return d.Child("Pipeline") }

// Properties returns a resource's properties, evaluated.
func (st *Stack) Properties(logical string) (*Map, error) {
	if p, ok := st.props[logical]; ok {
		return p, nil
	}
	r, ok := st.T.Resource(logical)
	if !ok {
		return nil, fmt.Errorf("%s: no resource %s", st.T.Name, logical)
	}
	v, err := st.Eval(r.Properties)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", st.T.Name, logical, err)
	}
	p, _ := v.(*Map)
	if p == nil {
		p = NewMap()
	}
	st.props[logical] = p
	return p, nil
}

// Output evaluates one of the stack's outputs.
func (st *Stack) Output(name string) (any, error) {
	o := st.T.Outputs.Map(name)
	if o == nil {
		return nil, fmt.Errorf("%s: no output %s", st.T.Name, name)
	}
	v, err := st.Eval(o.Get("Value"))
	if err != nil {
		return nil, fmt.Errorf("%s: output %s: %w", st.T.Name, name, err)
	}
	return v, nil
}

// arn builds an ARN in the sample account and region.
func (st *Stack) arn(service, resource string) string {
	return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, SampleRegion, SampleAccount, resource)
}

// generated is the name CloudFormation gives a resource that names none:
// stack, logical id, a random suffix.
func (st *Stack) generated(r Resource) string {
	return fmt.Sprintf("%s-%s-%s", st.Name, r.Logical, strings.ToUpper(sampleID(st.Name+r.Logical, 12)))
}

func (st *Stack) ref(r Resource) (any, error) {
	p, err := st.Properties(r.Logical)
	if err != nil {
		return nil, err
	}
	named := func(prop string) string {
		if n := p.String(prop); n != "" {
			return n
		}
		return st.generated(r)
	}
	// The types whose Ref is the name a property gives them.
	if prop, ok := map[string]string{
		"AWS::ECS::Cluster": "ClusterName", "AWS::Logs::LogGroup": "LogGroupName", "AWS::IAM::Role": "RoleName",
		"AWS::RDS::DBProxy": "DBProxyName", "AWS::CloudWatch::Alarm": "AlarmName", "AWS::CloudWatch::Dashboard": "DashboardName",
	}[r.Type]; ok {
		return named(prop), nil
	}
	switch r.Type {
	case "AWS::SNS::Topic":
		return st.arn("sns", named("TopicName")), nil
	case "AWS::SQS::Queue":
		return fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", SampleRegion, SampleAccount, named("QueueName")), nil
	case "AWS::ECS::TaskDefinition":
		return st.arn("ecs", "task-definition/"+named("Family")+":1"), nil
	case "AWS::ECS::Service":
		c, err := st.EvalString(p.Get("Cluster"))
		if err != nil {
			c = "default"
		}
		return st.arn("ecs", "service/"+c+"/"+named("ServiceName")), nil
	case "AWS::SecretsManager::Secret":
		name := named("Name")
		return st.arn("secretsmanager", "secret:"+name+"-"+secretSuffix(name)), nil
	case "AWS::EC2::SecurityGroup":
		return "sg-" + sampleID(st.Name+r.Logical, 17), nil
	case "AWS::RDS::DBCluster", "AWS::RDS::DBInstance", "AWS::RDS::DBSubnetGroup", "AWS::RDS::DBParameterGroup",
		"AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::SubnetGroup":
		return strings.ToLower(st.generated(r)), nil
	case "AWS::CloudFormation::Stack":
		child, err := st.d.Child(r.Logical)
		if err != nil {
			return nil, err
		}
		return child.Pseudo["AWS::StackId"], nil
	}
	return st.generated(r), nil
}

// getAtt knows the attributes the templates use, per type; any other is an
// error, so a misspelt attribute fails the tests rather than the deploy.
func (st *Stack) getAtt(r Resource, attr string) (any, error) {
	if r.Type == "AWS::CloudFormation::Stack" {
		out, ok := strings.CutPrefix(attr, "Outputs.")
		if !ok {
			return nil, fmt.Errorf("Fn::GetAtt %s.%s: a nested stack has Outputs.NAME only", r.Logical, attr)
		}
		child, err := st.d.Child(r.Logical)
		if err != nil {
			return nil, err
		}
		return child.Output(out)
	}
	ref, err := st.ref(r)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprint(ref)
	hash := sampleID(st.Name+r.Logical, 12)
	switch r.Type + "." + attr {
	case "AWS::SQS::Queue.Arn":
		return st.arn("sqs", name[strings.LastIndex(name, "/")+1:]), nil
	case "AWS::SQS::Queue.QueueName":
		return name[strings.LastIndex(name, "/")+1:], nil
	case "AWS::SQS::Queue.QueueUrl":
		return name, nil
	case "AWS::IAM::Role.Arn":
		return fmt.Sprintf("arn:aws:iam::%s:role/%s", SampleAccount, name), nil
	case "AWS::ECS::Service.Name":
		return name[strings.LastIndex(name, "/")+1:], nil
	case "AWS::Logs::LogGroup.Arn":
		return st.arn("logs", "log-group:"+name+":*"), nil
	case "AWS::RDS::DBProxy.Endpoint":
		return fmt.Sprintf("%s.proxy-%s.%s.rds.amazonaws.com", name, hash, SampleRegion), nil
	case "AWS::RDS::DBProxy.DBProxyArn":
		return st.arn("rds", "db-proxy:prx-"+sampleID(st.Name+r.Logical, 17)), nil
	case "AWS::RDS::DBCluster.Endpoint.Address":
		return fmt.Sprintf("%s.cluster-%s.%s.rds.amazonaws.com", name, hash, SampleRegion), nil
	case "AWS::RDS::DBCluster.Endpoint.Port":
		return "5432", nil
	case "AWS::ElastiCache::ReplicationGroup.PrimaryEndPoint.Address":
		return fmt.Sprintf("master.%s.%s.%s.cache.amazonaws.com", name, hash[:6], regionCode(SampleRegion)), nil
	case "AWS::ElastiCache::ReplicationGroup.PrimaryEndPoint.Port":
		return "6379", nil
	}
	return nil, fmt.Errorf("Fn::GetAtt %s.%s: not an attribute of %s this package knows", r.Logical, attr, r.Type)
}

// SecretValue is what the deployment's secret with this ARN holds: a
// generated secret's sample JSON, an evaluated SecretString (its dynamic
// references resolved), or the sample SMTP secret made outside the stack.
func (d *Deployment) SecretValue(arn string) (string, error) {
	for _, st := range d.stacks() {
		for _, r := range st.T.ResourcesOfType("AWS::SecretsManager::Secret") {
			ref, err := st.ref(r)
			if err != nil || ref != arn {
				continue
			}
			p, err := st.Properties(r.Logical)
			if err != nil {
				return "", err
			}
			if g := p.Map("GenerateSecretString"); g != nil {
				return generatedSecret(g)
			}
			return d.resolveDynamic(p.String("SecretString"))
		}
	}
	if arn == SampleParameters()["SMTPSecretArn"] {
		return sampleSMTPSecret, nil
	}
	return "", fmt.Errorf("no secret %s in the deployment", arn)
}

func (d *Deployment) stacks() []*Stack {
	out := []*Stack{d.Parent}
	for _, name := range d.Parent.T.Resources.Keys() {
		if st, err := d.Child(name); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// generatedSecret is a GenerateSecretString's sample: its template with the
// generated key set.
func generatedSecret(g *Map) (string, error) {
	obj := map[string]any{}
	if t := g.String("SecretStringTemplate"); t != "" {
		if err := json.Unmarshal([]byte(t), &obj); err != nil {
			return "", fmt.Errorf("SecretStringTemplate: %w", err)
		}
	}
	key := g.String("GenerateStringKey")
	if key == "" {
		return "SampleGeneratedSecret0123456789", nil
	}
	obj[key] = "Sample" + strings.ToUpper(key[:1]) + key[1:] + "0123456789abcdef"
	b, err := json.Marshal(obj)
	if err != nil {
		return "", fmt.Errorf("generated secret: %w", err)
	}
	return string(b), nil
}

// dynamicRef matches {{resolve:secretsmanager:ID:SecretString:KEY...}}.
var dynamicRef = regexp.MustCompile(`\{\{resolve:secretsmanager:(arn:[^:]+:secretsmanager:[^:]+:[0-9]+:secret:[^:]+)(?::SecretString)?(?::([^:}]*))?[^}]*\}\}`)

func (d *Deployment) resolveDynamic(s string) (string, error) {
	var firstErr error
	out := dynamicRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := dynamicRef.FindStringSubmatch(m)
		v, err := d.SecretValue(sub[1])
		if err == nil && sub[2] != "" {
			v, err = jsonKey(v, sub[2])
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return m
		}
		return v
	})
	return out, firstErr
}

func jsonKey(secret, key string) (string, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(secret), &obj); err != nil {
		return "", fmt.Errorf("secret is not JSON, cannot take key %q", key)
	}
	v, ok := obj[key].(string)
	if !ok {
		return "", fmt.Errorf("secret has no string key %q", key)
	}
	return v, nil
}

// Container is one container of an evaluated task definition.
type Container struct {
	Name, Image string
	Env         map[string]string // environment
	Secrets     map[string]string // secret name → valueFrom
	Properties  *Map
}

// Container returns the named container of a task definition in the stack.
func (st *Stack) Container(taskDef, name string) (Container, error) {
	p, err := st.Properties(taskDef)
	if err != nil {
		return Container{}, err
	}
	for _, c := range p.List("ContainerDefinitions") {
		cm, _ := c.(*Map)
		if cm.String("Name") != name {
			continue
		}
		out := Container{Name: name, Image: cm.String("Image"), Env: map[string]string{}, Secrets: map[string]string{}, Properties: cm}
		for _, e := range cm.List("Environment") {
			em, _ := e.(*Map)
			out.Env[em.String("Name")] = scalarString(em.Get("Value"))
		}
		for _, s := range cm.List("Secrets") {
			sm, _ := s.(*Map)
			out.Secrets[sm.String("Name")] = sm.String("ValueFrom")
		}
		return out, nil
	}
	return Container{}, fmt.Errorf("%s: task definition %s has no container %s", st.T.Name, taskDef, name)
}

// SecretValues resolves a container's secrets as ECS would put them in its
// environment: the whole secret, or one JSON key of it (ARN:KEY::).
func (d *Deployment) SecretValues(c Container) (map[string]string, error) {
	out := map[string]string{}
	for name, from := range c.Secrets {
		parts := strings.Split(from, ":")
		if len(parts) < 7 {
			return nil, fmt.Errorf("secret %s: %q is not a Secrets Manager ARN", name, from)
		}
		v, err := d.SecretValue(strings.Join(parts[:7], ":"))
		if err == nil && len(parts) > 7 && parts[7] != "" {
			v, err = jsonKey(v, parts[7])
		}
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// sampleID is a stable stand-in for a random id: n lowercase hex digits
// derived from seed.
func sampleID(seed string, n int) string {
	h := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(h[:])[:n]
}

// secretSuffix is the six characters Secrets Manager appends to an ARN.
func secretSuffix(name string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	h := sha256.Sum256([]byte(name))
	var b [6]byte
	for i := range b {
		b[i] = alphabet[int(h[i])%len(alphabet)]
	}
	return string(b[:])
}

// regionCode is ElastiCache's short region in endpoints (eu-west-1 → euw1).
func regionCode(region string) string {
	parts := strings.Split(region, "-")
	if len(parts) != 3 {
		return region
	}
	return parts[0] + parts[1][:1] + parts[2]
}
