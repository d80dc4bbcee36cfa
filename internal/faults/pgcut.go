package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// CommitCutter is a TCP proxy that speaks just enough of PostgreSQL's wire
// protocol to make commits ambiguous: while its rate is set, it picks
// commits (an explicit COMMIT, or the Sync that ends an implicit
// transaction which executed an INSERT, UPDATE or DELETE, as a pipelined
// batch is), passes them on to the server (PgBouncer or PostgreSQL),
// passes the server's reply on up to its final ReadyForQuery, and then
// resets the client's connection instead of passing that on. The server
// has decided the commit; the client cannot know what it decided. That is
// the fault a connection cut around COMMIT is, which toxiproxy, blind to
// the protocol, could only hit by luck.
type CommitCutter struct {
	Addr string

	upstream string
	ln       net.Listener
	rate     atomic.Uint64 // float64 bits
	cut      atomic.Int64
	commits  atomic.Int64 // commits of writes seen
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// NewCommitCutter starts a cutter in front of upstream (host:port) on a
// free port of 127.0.0.1, passing everything on until SetRate.
func NewCommitCutter(ctx context.Context, upstream string) (*CommitCutter, error) {
	ln, err := listenLocal(ctx)
	if err != nil {
		return nil, err
	}
	c := &CommitCutter{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[net.Conn]bool{}}
	c.wg.Go(c.serve)
	return c, nil
}

// SetRate makes each COMMIT from now on cut with probability rate (0 to 1).
func (c *CommitCutter) SetRate(rate float64) { c.rate.Store(math.Float64bits(rate)) }

// Cut returns how many commits were cut: decided by the server, their
// reply withheld, their connection reset.
func (c *CommitCutter) Cut() int { return int(c.cut.Load()) }

// Commits returns how many commits of writes passed through, cut or not.
func (c *CommitCutter) Commits() int { return int(c.commits.Load()) }

// Close stops the cutter and closes every connection.
func (c *CommitCutter) Close() error {
	err := c.ln.Close()
	c.mu.Lock()
	c.closed = true
	for conn := range c.conns {
		_ = conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	if err != nil {
		return fmt.Errorf("faults: close commit cutter: %w", err)
	}
	return nil
}

func (c *CommitCutter) track(conns ...net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	for _, conn := range conns {
		c.conns[conn] = true
	}
	return true
}

func (c *CommitCutter) untrack(conns ...net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range conns {
		delete(c.conns, conn)
		_ = conn.Close()
	}
}

func (c *CommitCutter) serve() {
	var d net.Dialer
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := d.DialContext(context.Background(), "tcp", c.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !c.track(client, server) {
			_ = client.Close()
			_ = server.Close()
			return
		}
		c.wg.Go(func() { c.relay(client, server) })
	}
}

// conn is the state one proxied connection shares between its directions.
type conn struct {
	// untyped is how many one-byte answers (to an SSLRequest or a
	// GSSENCRequest) the server still owes.
	untyped atomic.Int32

	// owed holds, for each Sync and simple Query passed on, in order, what
	// its ReadyForQuery (the server sends one for each) ends.
	mu   sync.Mutex
	owed []ending
	// decided is how many writes the client had sent at the last
	// ReadyForQuery that found the connection idle: committed or rolled
	// back by then.
	decided int
}

// ending is what a ReadyForQuery will end: the client's writes sent by
// then, whether it rolls back, and whether to cut it if it commits writes.
type ending struct {
	writes        int
	rollback, cut bool
}

func (st *conn) push(e ending) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.owed = append(st.owed, e)
}

func (st *conn) pop() ending {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.owed) == 0 {
		return ending{}
	}
	e := st.owed[0]
	st.owed = st.owed[1:]
	return e
}

// ready reads a ReadyForQuery's transaction status for the ending e it
// answers: whether it commits writes (the connection is idle, and writes
// were sent since it last was, not rolled back).
func (st *conn) ready(e ending, status []byte) bool {
	if len(status) != 1 || status[0] != 'I' {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	commits := !e.rollback && e.writes > st.decided
	st.decided = e.writes
	return commits
}

// relay runs one connection: the client's messages are read one by one and
// passed on; so are the server's, unless a cut is pending.
func (c *CommitCutter) relay(client, server net.Conn) {
	defer c.untrack(client, server)
	var st conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.fromServer(client, server, &st)
	}()
	c.fromClient(client, server, &st)
	_ = server.Close()
	_ = client.Close()
	<-done
}

// fromServer passes the server's messages on. While a cut is pending, the
// ReadyForQuery that ends the commit (transaction status idle: it is
// decided) is withheld and the client's connection reset.
func (c *CommitCutter) fromServer(client, server net.Conn, st *conn) {
	r := bufio.NewReaderSize(server, 32<<10)
	w := bufio.NewWriterSize(client, 32<<10)
	defer func() { _ = client.Close() }()
	for {
		if st.untyped.Load() > 0 {
			b, err := r.ReadByte()
			if err != nil || w.WriteByte(b) != nil || w.Flush() != nil {
				return
			}
			st.untyped.Add(-1)
			continue
		}
		typ, body, err := readMessage(r)
		if err != nil {
			return
		}
		if typ == 'Z' && c.cutsHere(st, body) {
			_ = w.Flush() // everything before the verdict
			if tc, ok := client.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not an orderly close
			}
			_ = server.Close()
			return
		}
		if writeMessage(w, typ, body) != nil {
			return
		}
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

// cutsHere counts a ReadyForQuery that ends a commit of writes, and says
// whether that commit is to be cut.
func (c *CommitCutter) cutsHere(st *conn, status []byte) bool {
	e := st.pop()
	if !st.ready(e, status) {
		return false
	}
	c.commits.Add(1)
	if e.cut {
		c.cut.Add(1)
	}
	return e.cut
}

// fromClient passes the client's messages on, marking a cut before it
// passes on a commit chosen to be cut.
func (c *CommitCutter) fromClient(client, server net.Conn, st *conn) {
	r := bufio.NewReaderSize(client, 32<<10)
	w := bufio.NewWriterSize(server, 32<<10)
	if err := c.startup(r, w, st); err != nil {
		return
	}
	var (
		writing = map[string]bool{} // prepared statements that write, by name ("" the unnamed one)
		portal  bool                // the portal last bound writes
		writes  int                 // writes executed so far
	)
	end := func(rollback bool) {
		rate := math.Float64frombits(c.rate.Load())
		st.push(ending{writes: writes, rollback: rollback, cut: rate > 0 && rand.Float64() < rate})
	}
	for {
		typ, body, err := readMessage(r)
		if err != nil {
			return
		}
		switch typ {
		case 'P': // Parse: name, query
			name, rest := cstring(body)
			query, _ := cstring(rest)
			writing[name] = isWrite(query)
		case 'B': // Bind: portal, statement
			_, rest := cstring(body)
			stmt, _ := cstring(rest)
			portal = writing[stmt]
		case 'E': // Execute
			if portal {
				writes++
			}
		case 'S': // Sync: the server answers ReadyForQuery
			end(false)
		case 'Q': // a simple query: so does it
			q, _ := cstring(body)
			if isWrite(q) {
				writes++
			}
			end(isRollback(q))
		}
		if writeMessage(w, typ, body) != nil {
			return
		}
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
	}
}

// readMessage reads one typed message: its type byte and its body.
func readMessage(r *bufio.Reader) (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, fmt.Errorf("faults: read message: %w", err)
	}
	n := int(binary.BigEndian.Uint32(head[1:])) - 4
	if n < 0 || n > 1<<30 {
		return 0, nil, fmt.Errorf("faults: message of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("faults: read message: %w", err)
	}
	return head[0], body, nil
}

func writeMessage(w *bufio.Writer, typ byte, body []byte) error {
	var head [5]byte
	head[0] = typ
	binary.BigEndian.PutUint32(head[1:], uint32(len(body)+4)) //nolint:gosec // bounded by readMessage
	if _, err := w.Write(head[:]); err != nil {
		return fmt.Errorf("faults: write message: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("faults: write message: %w", err)
	}
	return nil
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte) {
	s, rest, _ := bytes.Cut(b, []byte{0})
	return string(s), rest
}

// startup passes on the untyped messages a connection opens with: an
// SSLRequest or GSSENCRequest (answered by the server with one byte), then
// the StartupMessage.
func (c *CommitCutter) startup(r *bufio.Reader, w *bufio.Writer, st *conn) error {
	const sslRequest, gssRequest = 80877103, 80877104
	for {
		head := make([]byte, 8)
		if _, err := io.ReadFull(r, head); err != nil {
			return fmt.Errorf("faults: startup: %w", err)
		}
		n := int(binary.BigEndian.Uint32(head)) - 8
		if n < 0 || n > 1<<20 {
			return fmt.Errorf("faults: startup message of %d bytes", n+8)
		}
		rest := make([]byte, n)
		if _, err := io.ReadFull(r, rest); err != nil {
			return fmt.Errorf("faults: startup: %w", err)
		}
		code := binary.BigEndian.Uint32(head[4:])
		if code == sslRequest || code == gssRequest {
			st.untyped.Add(1)
		}
		if _, err := w.Write(head); err != nil {
			return fmt.Errorf("faults: startup: %w", err)
		}
		if _, err := w.Write(rest); err != nil {
			return fmt.Errorf("faults: startup: %w", err)
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("faults: startup: %w", err)
		}
		if code != sslRequest && code != gssRequest {
			return nil
		}
	}
}

var writeSQL = regexp.MustCompile(`(?i)\b(insert|update|delete)\b|\borderpipe_\w+\(`)

// isWrite reports whether a statement writes: a write statement, or a call
// of one of orderpipe's functions (store/migrations 00010, 00011), every
// one of which writes — the handlers' effects and the email's claim and
// record are nothing but such calls.
func isWrite(q string) bool { return writeSQL.MatchString(q) }

// isRollback reports whether a simple query is ROLLBACK (or ABORT).
func isRollback(q string) bool {
	q = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(q)), ";")
	return q == "rollback" || q == "abort" || q == "rollback transaction"
}
