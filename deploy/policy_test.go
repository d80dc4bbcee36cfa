package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/topology"
)

// The tests read the templates as the sample deployment renders them
// (RenderSample); TestRenderedFilesAreUpToDate holds deploy/ecs/*.json to
// the same rendering, and TestStackDeploysIntoMoto runs the same policy
// checks on the roles an AWS emulator built from pipeline.yaml.

// strs is an IAM policy field that is a string or a list of strings.
type strs []string

func (s *strs) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = strs{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type statement struct {
	Sid         string          `json:"Sid"`
	Effect      string          `json:"Effect"`
	Action      strs            `json:"Action"`
	NotAction   strs            `json:"NotAction"`
	Resource    strs            `json:"Resource"`
	NotResource strs            `json:"NotResource"`
	Condition   json.RawMessage `json:"Condition"`
}

type policy struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

// parsePolicy reads a policy document (JSON, or a rendered template *Map)
// and refuses what this test cannot evaluate.
func parsePolicy(t *testing.T, what string, doc any) policy {
	t.Helper()
	b, ok := doc.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(doc); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var p policy
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if p.Version != "2012-10-17" || len(p.Statement) == 0 {
		t.Fatalf("%s: version %q, %d statements; want a 2012-10-17 policy", what, p.Version, len(p.Statement))
	}
	for _, s := range p.Statement {
		if s.Effect != "Allow" || len(s.NotAction) > 0 || len(s.NotResource) > 0 || len(s.Condition) > 0 {
			t.Fatalf("%s: statement %q: this test evaluates Allow statements with Action and Resource only", what, s.Sid)
		}
	}
	return p
}

// sample is the sample deployment's pipeline stack.
func sample(t *testing.T) (*Deployment, *Stack) {
	t.Helper()
	d, err := RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

// rolePolicy is a role's inline policy in the sample deployment.
func rolePolicy(t *testing.T, st *Stack, role string) policy {
	t.Helper()
	doc, err := st.RolePolicy(role)
	if err != nil {
		t.Fatal(err)
	}
	return parsePolicy(t, st.T.Name+" "+role, doc)
}

// publishedActions reads testdata/iam-actions/SERVICE.txt: the service's
// actions as the AWS Service Authorization Reference lists them.
func publishedActions(t *testing.T, service string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "iam-actions", service+".txt"))
	if err != nil {
		t.Fatalf("no published action list for service %q: add testdata/iam-actions/%s.txt from the Service Authorization Reference (%v)", service, service, err)
	}
	defer func() { _ = f.Close() }() // read-only
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// glob is an IAM wildcard pattern (* any run, ? one character) as a regexp.
func glob(pattern string, foldCase bool) *regexp.Regexp {
	var b strings.Builder
	if foldCase {
		b.WriteString("(?i)")
	}
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// policyDocuments finds every object with a "Statement" list in a JSON
// value: policy files, and policies embedded in other documents.
func policyDocuments(v any) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["Statement"].([]any); ok {
			out = append(out, v)
		}
		for _, c := range v {
			out = append(out, policyDocuments(c)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, policyDocuments(c)...)
		}
	}
	return out
}

// deployDocuments is every JSON document of the deployment: the files
// under deploy/ and every stack's resources as the sample renders them
// (trust policies, queue policies, role policies).
func deployDocuments(t *testing.T) map[string]any {
	t.Helper()
	docs := map[string]any{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".json") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		docs[path] = doc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := sample(t)
	for _, st := range d.stacks() {
		for _, name := range st.T.Resources.Keys() {
			p, err := st.Properties(name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("%s %s: %v", st.T.Name, name, err)
			}
			var doc any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatalf("%s %s: %v", st.T.Name, name, err)
			}
			docs["cloudformation/"+st.T.Name+" "+name] = doc
		}
	}
	return docs
}

// TestEveryIAMActionExists checks every action named in the deployment
// (the templates and the files under deploy/) against the services'
// published action lists: IAM accepts a policy with a misspelt or invented
// action (sqs:DeleteMessageBatch is one: sqs:DeleteMessage authorises the
// batch call) and it grants nothing.
func TestEveryIAMActionExists(t *testing.T) {
	lists := map[string][]string{}
	checked := 0
	for path, doc := range deployDocuments(t) {
		for _, p := range policyDocuments(doc) {
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			var pol policy
			if err := json.Unmarshal(raw, &pol); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, s := range pol.Statement {
				for _, a := range append(slices.Clone(s.Action), s.NotAction...) {
					checked++
					service, name, ok := strings.Cut(a, ":")
					if !ok || service == "" || name == "" {
						t.Errorf("%s: statement %q: action %q is not service:Action", path, s.Sid, a)
						continue
					}
					if strings.Contains(service, "*") || name == "*" {
						t.Errorf("%s: statement %q: %q grants a whole service; name the actions", path, s.Sid, a)
						continue
					}
					if lists[service] == nil {
						lists[service] = publishedActions(t, service)
					}
					re := glob(name, true) // action names are case-insensitive
					if !slices.ContainsFunc(lists[service], re.MatchString) {
						t.Errorf("%s: statement %q: %s is not an IAM action of %s (see testdata/iam-actions/%s.txt)", path, s.Sid, a, service, service)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no IAM action found in the deployment")
	}
}

// allows reports whether p allows action on resource.
func (p policy) allows(action, resource string) bool {
	for _, s := range p.Statement {
		if slices.ContainsFunc(s.Action, func(a string) bool { return glob(a, true).MatchString(action) }) &&
			slices.ContainsFunc(s.Resource, func(r string) bool { return glob(r, false).MatchString(resource) }) {
			return true
		}
	}
	return false
}

// actions is every action p names, sorted.
func (p policy) actions() []string {
	var out []string
	for _, s := range p.Statement {
		for _, a := range s.Action {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return out
}

// task is the part of an ECS task definition the tests read.
// task is an ECS task definition, as the template, the rendered
// deploy/ecs JSON (camelCase: encoding/json matches names regardless of
// case) and the SDK write it.
type task struct {
	ExecutionRoleArn     string `json:"ExecutionRoleArn"`
	TaskRoleArn          string `json:"TaskRoleArn"`
	ContainerDefinitions []struct {
		Name        string `json:"Name"`
		Image       string `json:"Image"`
		Environment []struct {
			Name  string `json:"Name"`
			Value string `json:"Value"`
		} `json:"Environment"`
		Secrets []struct {
			Name      string `json:"Name"`
			ValueFrom string `json:"ValueFrom"`
		} `json:"Secrets"`
		LogConfiguration struct {
			LogDriver string            `json:"LogDriver"`
			Options   map[string]string `json:"Options"`
		} `json:"LogConfiguration"`
	} `json:"ContainerDefinitions"`
}

func (td task) env(name string) string {
	for _, v := range td.ContainerDefinitions[0].Environment {
		if v.Name == name {
			return v.Value
		}
	}
	return ""
}

// sampleTask is a task definition of pipeline.yaml as the sample renders
// it, in ECS's own JSON.
func sampleTask(t *testing.T, st *Stack, logical string) task {
	t.Helper()
	p, err := st.Properties(logical)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ecsJSON(p, ""))
	if err != nil {
		t.Fatal(err)
	}
	var td task
	if err := json.Unmarshal(b, &td); err != nil {
		t.Fatal(err)
	}
	if len(td.ContainerDefinitions) != 1 {
		t.Fatalf("%s: %d containers, want one", logical, len(td.ContainerDefinitions))
	}
	return td
}

// imageRepo splits an ECR image reference into account, region and
// repository ARN.
var ecrImage = regexp.MustCompile(`^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+)`)

// TestExecutionRolePolicyCoversTheTaskDefinitions: the execution role is
// what ECS uses to start a task (pull the image, create the log stream,
// read the secrets into the environment); without one of them the task
// never starts. It must allow all of that, for the worker's task and the
// migration task, and nothing else.
func TestExecutionRolePolicyCoversTheTaskDefinitions(t *testing.T) {
	_, st := sample(t)
	checkExecutionRole(t, rolePolicy(t, st, ExecutionRole),
		sampleTask(t, st, WorkerTaskDefinition), sampleTask(t, st, MigrateTaskDefinition))
}

// checkExecutionRole checks an execution role's policy against the task
// definitions that name it.
func checkExecutionRole(t *testing.T, p policy, tds ...task) {
	t.Helper()
	need := map[string][]string{}
	var secrets, groups []string
	for _, td := range tds {
		c := td.ContainerDefinitions[0]
		m := ecrImage.FindStringSubmatch(c.Image)
		if m == nil {
			t.Fatalf("image %q is not an ECR image", c.Image)
		}
		account, repoARN := m[1], fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", m[2], m[1], m[3])
		if td.ExecutionRoleArn != "" && !strings.Contains(td.ExecutionRoleArn, ":"+account+":") {
			t.Errorf("execution role %s is not in the image's account %s", td.ExecutionRoleArn, account)
		}
		need["ecr:GetAuthorizationToken"] = []string{"*"} // account-wide: it takes no resource
		for _, a := range []string{"ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"} {
			need[a] = append(need[a], repoARN)
		}
		lc := c.LogConfiguration
		if lc.LogDriver != "awslogs" || lc.Options["awslogs-group"] == "" {
			t.Fatalf("container %s: log configuration %+v, want awslogs with a group", c.Name, lc)
		}
		if lc.Options["awslogs-create-group"] == "true" {
			t.Fatalf("container %s: awslogs-create-group needs logs:CreateLogGroup; the group is created with the stack", c.Name)
		}
		group := fmt.Sprintf("arn:aws:logs:%s:%s:log-group:%s", lc.Options["awslogs-region"], account, lc.Options["awslogs-group"])
		groups = append(groups, group)
		stream := group + ":log-stream:" + lc.Options["awslogs-stream-prefix"] + "/" + c.Name + "/0123456789abcdef0123456789abcdef"
		need["logs:CreateLogStream"] = append(need["logs:CreateLogStream"], stream)
		need["logs:PutLogEvents"] = append(need["logs:PutLogEvents"], stream)
		for _, s := range c.Secrets {
			// The templates name secrets by full ARN (with Secrets Manager's
			// six-character suffix), so the policy can name exactly them.
			arn := secretARN(s.ValueFrom)
			if !strings.HasPrefix(arn, "arn:aws:secretsmanager:") {
				t.Fatalf("secret %s: %q is not a Secrets Manager ARN", s.Name, s.ValueFrom)
			}
			secrets = append(secrets, arn)
			need["secretsmanager:GetSecretValue"] = append(need["secretsmanager:GetSecretValue"], arn)
		}
	}
	for action, resources := range need {
		for _, r := range resources {
			if !p.allows(action, r) {
				t.Errorf("execution role policy does not allow %s on %s", action, r)
			}
		}
	}
	var want []string
	for a := range need {
		want = append(want, a)
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, p.actions()); diff != "" {
		t.Errorf("execution role actions (-needed +granted):\n%s", diff)
	}
	for _, s := range p.Statement {
		for _, r := range s.Resource {
			switch {
			case r == "*" && !slices.Equal(s.Action, []string{"ecr:GetAuthorizationToken"}):
				t.Errorf("statement %q grants %v on *; only ecr:GetAuthorizationToken needs it", s.Sid, s.Action)
			case strings.HasPrefix(r, "arn:aws:secretsmanager:") && !slices.ContainsFunc(secrets, glob(r, false).MatchString):
				t.Errorf("statement %q grants secret %s, which no task definition names", s.Sid, r)
			case strings.HasPrefix(r, "arn:aws:logs:") && !slices.ContainsFunc(groups, func(g string) bool { return strings.HasPrefix(r, g+":") }):
				t.Errorf("statement %q grants logs on %s, outside the tasks' log groups", s.Sid, r)
			}
		}
	}
}

// secretARN is the secret's ARN in an ECS secrets valueFrom, without the
// json-key:version-stage:version-id selectors.
func secretARN(valueFrom string) string {
	parts := strings.Split(valueFrom, ":")
	if len(parts) < 7 {
		return valueFrom
	}
	return strings.Join(parts[:7], ":")
}

// TestTaskRolePolicyCoversExactlyWhatTheCodeCalls: the task role's actions
// are those the worker's code calls, read from the code itself (the SQS and
// SNS ports of worker/ and events/, topology.Resolve and what it calls, and
// store's RDS IAM token), and each is allowed on the resources the task
// definition's environment names. The migration task's role allows the
// database connection alone.
func TestTaskRolePolicyCoversExactlyWhatTheCodeCalls(t *testing.T) {
	d, st := sample(t)
	td := sampleTask(t, st, WorkerTaskDefinition)
	data, err := d.Data()
	if err != nil {
		t.Fatal(err)
	}
	proxy := outputString(t, data, "ProxyResourceId")
	m := ecrImage.FindStringSubmatch(td.ContainerDefinitions[0].Image)
	if m == nil {
		t.Fatal("image is not an ECR image")
	}
	arn := func(service, resource string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, td.env("AWS_REGION"), m[1], resource)
	}
	checkTaskRole(t, rolePolicy(t, st, TaskRole), td, arn, proxy)

	mig := rolePolicy(t, st, "MigrateTaskRole")
	if diff := cmp.Diff([]string{"rds-db:connect"}, mig.actions()); diff != "" {
		t.Errorf("migration task role actions (-want +granted):\n%s", diff)
	}
	mt := sampleTask(t, st, MigrateTaskDefinition)
	if r := dbUserARN(t, mt, arn, proxy); !mig.allows("rds-db:connect", r) {
		t.Errorf("migration task role does not allow rds-db:connect on %s", r)
	}
}

// dbUserARN is the rds-db:connect resource of the task's DATABASE_URL user
// on the proxy.
func dbUserARN(t *testing.T, td task, arn func(service, resource string) string, proxyID string) string {
	t.Helper()
	u, err := url.Parse(td.env("DATABASE_URL"))
	if err != nil || u.User.Username() == "" {
		t.Fatalf("DATABASE_URL in the task definition names no user")
	}
	return arn("rds-db", "dbuser:"+proxyID+"/"+u.User.Username())
}

// checkTaskRole checks a worker task role's policy: exactly the actions the
// code calls, each on the resources the task's environment names. arn
// builds an ARN in the task's account and region.
func checkTaskRole(t *testing.T, p policy, td task, arn func(service, resource string) string, proxyID string) {
	t.Helper()
	calls := codeActions(t)
	var want []string
	for a := range calls {
		want = append(want, a)
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, p.actions()); diff != "" {
		t.Errorf("task role actions (-called by the code +granted):\n%s\ncalls: %v", diff, calls)
	}
	top := topology.Default().WithPrefix(td.env("ORDERPIPE_NAME_PREFIX"))
	need := map[string][]string{
		"sns:ListTopics": {"*"}, // topology.Resolve finds the topic by name
		"sns:Publish":    {arn("sns", top.Topic)},
	}
	for _, q := range top.Queues {
		for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"} {
			need[a] = append(need[a], arn("sqs", q.Name))
		}
		for _, a := range []string{"sqs:SendMessage", "sqs:GetQueueUrl"} {
			need[a] = append(need[a], arn("sqs", top.DLQName(q)))
		}
	}
	need["rds-db:connect"] = []string{dbUserARN(t, td, arn, proxyID)}
	for action, resources := range need {
		if _, ok := calls[action]; !ok {
			t.Errorf("the test expects %s, which the code no longer calls: update the test", action)
		}
		for _, r := range resources {
			if !p.allows(action, r) {
				t.Errorf("task role policy does not allow %s on %s", action, r)
			}
		}
	}
	for _, s := range p.Statement {
		for _, r := range s.Resource {
			if r == "*" && !slices.Equal(s.Action, []string{"sns:ListTopics"}) {
				t.Errorf("statement %q grants %v on *; only sns:ListTopics needs it", s.Sid, s.Action)
			}
		}
	}
}

// codeActions returns the IAM actions the worker process needs, each with
// the code that calls it.
func codeActions(t *testing.T) map[string]string {
	t.Helper()
	ops := map[string]string{} // "sqs:DeleteMessageBatch" → where
	// The ports: worker.SQSAPI and events.SNSAPI list every SDK operation the
	// runtime and the publisher may call.
	for _, dir := range []string{"../worker", "../events"} {
		for _, f := range parseDir(t, dir) {
			ast.Inspect(f.file, func(n ast.Node) bool {
				it, ok := n.(*ast.InterfaceType)
				if !ok {
					return true
				}
				for _, m := range it.Methods.List {
					ft, ok := m.Type.(*ast.FuncType)
					if !ok || len(m.Names) == 0 {
						continue
					}
					for _, p := range ft.Params.List {
						if svc, op, ok := sdkInput(p.Type); ok {
							ops[svc+":"+op] = f.name + ": interface method " + m.Names[0].Name
						}
					}
				}
				return true
			})
		}
	}
	// topology.Resolve and the package functions it calls, on the clients it
	// is given.
	files := parseDir(t, "../topology")
	funcs := map[string]*ast.FuncDecl{}
	for _, f := range files {
		for _, d := range f.file.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
				funcs[fd.Name.Name] = fd
			}
		}
	}
	if funcs["Resolve"] == nil {
		t.Fatal("topology.Resolve not found")
	}
	seen := map[string]bool{}
	queue := []string{"Resolve"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		fd := funcs[name]
		clients := map[string]string{} // parameter → service
		for _, p := range fd.Type.Params.List {
			if svc, ok := sdkClient(p.Type); ok {
				for _, n := range p.Names {
					clients[n.Name] = svc
				}
			}
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				if funcs[fn.Name] != nil {
					queue = append(queue, fn.Name)
				}
			case *ast.SelectorExpr:
				x, ok := fn.X.(*ast.Ident)
				if !ok {
					return true
				}
				if svc, ok := clients[x.Name]; ok {
					ops[svc+":"+fn.Sel.Name] = "topology." + name
				}
				if m := paginator.FindStringSubmatch(fn.Sel.Name); m != nil && (x.Name == "sns" || x.Name == "sqs") {
					ops[x.Name+":"+m[1]] = "topology." + name
				}
			}
			return true
		})
	}
	// Anything internal/app (which wires them) would call itself.
	for _, f := range parseDir(t, "../internal/app") {
		ast.Inspect(f.file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.CompositeLit); ok {
				if svc, op, ok := sdkInput(&ast.StarExpr{X: lit.Type}); ok {
					ops[svc+":"+op] = f.name + ": " + op + "Input"
				}
			}
			return true
		})
	}
	// store's RDS IAM token.
	b, err := os.ReadFile("../store/iam.go")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "auth.BuildAuthToken(") {
		ops["rds-db:connect"] = "store/iam.go: auth.BuildAuthToken"
	}

	actions := map[string]string{}
	for op, where := range ops {
		svc, name, _ := strings.Cut(op, ":")
		list := publishedActions(t, svc)
		switch {
		case slices.Contains(list, name):
		case strings.HasSuffix(name, "Batch") && slices.Contains(list, strings.TrimSuffix(name, "Batch")):
			name = strings.TrimSuffix(name, "Batch") // the batch call is authorised by the single one
		default:
			t.Errorf("%s (%s) has no IAM action in testdata/iam-actions/%s.txt", op, where, svc)
			continue
		}
		actions[svc+":"+name] += where + "; "
	}
	return actions
}

var paginator = regexp.MustCompile(`^New(\w+)Paginator$`)

// sdkInput matches *sqs.XInput and *sns.XInput.
func sdkInput(e ast.Expr) (service, op string, ok bool) {
	sel, ok := starSelector(e)
	if !ok || !strings.HasSuffix(sel.Sel.Name, "Input") {
		return "", "", false
	}
	pkg, ok := sel.X.(*ast.Ident)
	if !ok {
		return "", "", false
	}
	return pkg.Name, strings.TrimSuffix(sel.Sel.Name, "Input"), true
}

// sdkClient matches *sqs.Client and *sns.Client.
func sdkClient(e ast.Expr) (string, bool) {
	sel, ok := starSelector(e)
	if !ok || sel.Sel.Name != "Client" {
		return "", false
	}
	pkg, ok := sel.X.(*ast.Ident)
	if !ok {
		return "", false
	}
	return pkg.Name, true
}

func starSelector(e ast.Expr) (*ast.SelectorExpr, bool) {
	star, ok := e.(*ast.StarExpr)
	if !ok {
		return nil, false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return nil, false
	}
	x, ok := sel.X.(*ast.Ident)
	return sel, ok && (x.Name == "sqs" || x.Name == "sns")
}

type goFile struct {
	name string
	file *ast.File
}

// parseDir parses a directory's non-test Go files (not its subdirectories:
// internal fakes implement the whole SDK surface and call nothing).
func parseDir(t *testing.T, dir string) []goFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []goFile
	fset := token.NewFileSet()
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, goFile{name: strings.TrimPrefix(p, "../"), file: f})
	}
	if len(out) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return out
}
