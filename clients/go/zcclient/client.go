// Package zcclient is a small client for zerocontact's partner gateway: an mTLS connection
// presenting the partner's certificate, the partner credential on every call, the party's
// token and an idempotency key where a call needs them, deadlines, the request id of every
// call and the google.rpc details of a refusal. The stubs are the generated ones
// (zerocontact/clients/go/gen/zerocontact/gateway/v1, `make clients`).
//
//	zc, err := zcclient.Dial(zcclient.Config{Target: "gateway.example:50051",
//		CAFile: "ca.crt", CertFile: "shop-a.crt", KeyFile: "shop-a.key", Credential: "zcp_..."})
//	var call zcclient.Call
//	resp, err := zc.Loans.ListLoanProducts(zc.Context(ctx), &gatewayv1.ListLoanProductsRequest{}, call.Options()...)
//	fmt.Println(call.RequestID())
package zcclient

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatewayv1 "zerocontact/clients/go/gen/zerocontact/gateway/v1"
)

// RequestIDKey is the metadata key of the request id: trailing metadata on every response,
// initial metadata too on a stream.
const RequestIDKey = "x-request-id"

// Config says where the gateway is and who the partner is.
type Config struct {
	Target     string // host:port
	CAFile     string // PEM: the CA that signed the gateway's certificate
	CertFile   string // PEM: the partner's client certificate
	KeyFile    string // PEM: its private key (PKCS#8 or SEC 1)
	Credential string // the partner's API credential (zcp_…), sent as x-partner-credential
	ServerName string // TLS name to verify instead of the target's host (optional)
	// Timeout of a unary call made with Context (default 10 s; the gateway caps it at 30 s).
	Timeout time.Duration
	// ServiceConfigJSON: a gRPC service config (retry policy, timeouts), optional.
	ServiceConfigJSON string
}

// Client is one partner's connection to the gateway.
type Client struct {
	Conn     *grpc.ClientConn
	Identity gatewayv1.IdentityServiceClient
	Loans    gatewayv1.LoanServiceClient
	Payroll  gatewayv1.PayrollServiceClient
	Signals  gatewayv1.SignalServiceClient
	timeout  time.Duration
}

type partnerCredential string

func (c partnerCredential) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"x-partner-credential": string(c)}, nil
}

func (partnerCredential) RequireTransportSecurity() bool { return true }

// TLSConfig is the mTLS configuration: the partner's certificate, the gateway's CA.
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("partner certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("gateway CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("gateway CA: no certificate in %s", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      roots,
		ServerName:   serverName,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// Dial makes the client (the connection is established lazily, on the first call).
func Dial(cfg Config, extra ...grpc.DialOption) (*Client, error) {
	tlsConfig, err := TLSConfig(cfg.CAFile, cfg.CertFile, cfg.KeyFile, cfg.ServerName)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithPerRPCCredentials(partnerCredential(cfg.Credential)),
	}
	if cfg.ServiceConfigJSON != "" {
		opts = append(opts, grpc.WithDefaultServiceConfig(cfg.ServiceConfigJSON))
	}
	conn, err := grpc.NewClient(cfg.Target, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	return &Client{
		Conn:     conn,
		Identity: gatewayv1.NewIdentityServiceClient(conn),
		Loans:    gatewayv1.NewLoanServiceClient(conn),
		Payroll:  gatewayv1.NewPayrollServiceClient(conn),
		Signals:  gatewayv1.NewSignalServiceClient(conn),
		timeout:  timeout,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.Conn.Close() }

// CallOptions for one unary call: a deadline of the client's Timeout; with a token, the
// party's `authorization: Bearer`; with idempotent, a fresh `idempotency-key` (mutating RPCs).
// Cancel the returned context when the call is done.
type CallOptions struct {
	Token      string
	Idempotent bool
	Key        string // an idempotency key of your own (to retry a call); implies Idempotent
}

// Context derives a call's context: its deadline and metadata.
func (c *Client) Context(parent context.Context, opts ...CallOptions) (context.Context, context.CancelFunc) {
	return c.ContextTimeout(parent, c.timeout, opts...)
}

// ContextTimeout is Context with another deadline (a watch stream's, say).
func (c *Client) ContextTimeout(parent context.Context, timeout time.Duration, opts ...CallOptions) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	for _, o := range opts {
		if o.Token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.Token)
		}
		if o.Key != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", o.Key)
		} else if o.Idempotent {
			ctx = metadata.AppendToOutgoingContext(ctx, "idempotency-key", NewKey())
		}
	}
	return ctx, cancel
}

// NewKey is a fresh idempotency key (keep it to retry the same call).
func NewKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Call captures a unary call's headers and trailers: pass Options() to the stub.
type Call struct {
	Header, Trailer metadata.MD
}

// Options capture the call's metadata.
func (c *Call) Options() []grpc.CallOption {
	return []grpc.CallOption{grpc.Header(&c.Header), grpc.Trailer(&c.Trailer)}
}

// RequestID is the call's request id (quote it to support), "" before the call ended.
func (c *Call) RequestID() string {
	return first(c.Trailer, RequestIDKey, first(c.Header, RequestIDKey, ""))
}

// StreamRequestID is a stream's request id, from its initial metadata (sent when the stream
// is accepted) or, once it ended, its trailers.
func StreamRequestID(stream grpc.ClientStream) string {
	header, _ := stream.Header()
	return first(header, RequestIDKey, first(stream.Trailer(), RequestIDKey, ""))
}

func first(md metadata.MD, key, fallback string) string {
	if values := md.Get(key); len(values) > 0 {
		return values[0]
	}
	return fallback
}

// Error is a refused call with the gateway's google.rpc details unpacked.
type Error struct {
	Code            codes.Code
	Message         string
	Reason          string            // ErrorInfo.reason, e.g. LOAN_NOT_FOUND
	Domain          string            // ErrorInfo.domain: gateway.zerocontact
	Metadata        map[string]string // ErrorInfo.metadata
	FieldViolations map[string]string // BadRequest: field → description
	RetryDelay      time.Duration     // RetryInfo (0: none)
	RequestID       string            // RequestInfo.request_id (= the x-request-id trailer)
	ServingData     string            // RequestInfo.serving_data: the method that answered
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %s (request id %s)", e.Code, e.Reason, e.Message, e.RequestID)
}

// Details unpacks a call's error; nil when err is not a gRPC status.
func Details(err error) *Error {
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil
	}
	out := &Error{Code: st.Code(), Message: st.Message(), FieldViolations: map[string]string{}}
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.ErrorInfo:
			out.Reason, out.Domain, out.Metadata = v.GetReason(), v.GetDomain(), v.GetMetadata()
		case *errdetails.BadRequest:
			for _, f := range v.GetFieldViolations() {
				out.FieldViolations[f.GetField()] = f.GetDescription()
			}
		case *errdetails.RetryInfo:
			out.RetryDelay = v.GetRetryDelay().AsDuration()
		case *errdetails.RequestInfo:
			out.RequestID, out.ServingData = v.GetRequestId(), v.GetServingData()
		}
	}
	return out
}
