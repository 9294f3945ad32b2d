// Command journey is the 310 loan journey through the gateway, in Go (examples/partner_310.py
// does the same in Python): register a customer, enrol an authenticator with identity (the
// customer's own app does this, never the partner), authenticate with two factors, become
// KYC VERIFIED, apply for merchant-310, watch the application until it is decided, accept
// the offer and watch on until the loan is disbursed. It prints each call's request id, and
// shows a refusal's google.rpc details on a deliberately malformed call.
//
//	zc-journey-go --target localhost:50051 --ca ca.crt --cert shop-a.crt --key shop-a.key \
//	    --credential zcp_... --identity-url http://127.0.0.1:8001
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	commonv1 "zerocontact/clients/go/gen/zerocontact/common/v1"
	gatewayv1 "zerocontact/clients/go/gen/zerocontact/gateway/v1"
	"zerocontact/clients/go/zcclient"
)

const password = "correct horse battery staple"

func main() {
	cfg := zcclient.Config{}
	flag.StringVar(&cfg.Target, "target", "localhost:50051", "gateway host:port")
	flag.StringVar(&cfg.CAFile, "ca", "", "gateway CA (PEM)")
	flag.StringVar(&cfg.CertFile, "cert", "", "partner certificate (PEM)")
	flag.StringVar(&cfg.KeyFile, "key", "", "partner key (PEM)")
	flag.StringVar(&cfg.Credential, "credential", os.Getenv("ZC_PARTNER_CREDENTIAL"), "partner credential (or $ZC_PARTNER_CREDENTIAL)")
	flag.StringVar(&cfg.ServerName, "server-name", "", "TLS name override (e.g. localhost)")
	serviceConfig := flag.String("service-config", "", "gRPC service config JSON file (optional)")
	identityURL := flag.String("identity-url", "http://127.0.0.1:8001", "identity's HTTP API (TOTP enrolment)")
	amount := flag.Int64("amount-fen", 5_000_000, "amount applied for, in fen")
	flag.Parse()
	if *serviceConfig != "" {
		raw, err := os.ReadFile(*serviceConfig)
		if err != nil {
			fail(err)
		}
		cfg.ServiceConfigJSON = string(raw)
	}
	os.Exit(journey(cfg, *identityURL, *amount))
}

func fail(err error) {
	if d := zcclient.Details(err); d != nil {
		fmt.Printf("refused: %s %s %q request-id %s\n", d.Code, d.Reason, d.Message, d.RequestID)
	} else {
		fmt.Printf("failed: %v\n", err)
	}
	os.Exit(1)
}

func journey(cfg zcclient.Config, identityURL string, amountFen int64) int {
	zc, err := zcclient.Dial(cfg)
	if err != nil {
		fail(err)
	}
	defer zc.Close()
	bg := context.Background()

	// register
	customer := sampleCustomer()
	var call zcclient.Call
	ctx, cancel := zc.Context(bg, zcclient.CallOptions{Idempotent: true})
	registered, err := zc.Identity.RegisterCustomer(ctx, customer, call.Options()...)
	cancel()
	if err != nil {
		fail(err)
	}
	party := registered.GetParty()
	fmt.Printf("registered %s (%s) %s request-id %s\n", party.GetPartyId(), party.GetPhoneMasked(), party.GetKycLevel(), call.RequestID())

	// two factors: password, the customer's app enrols TOTP with identity, then TOTP
	device := "device-" + zcclient.NewKey()[:8]
	first, err := startAuthentication(zc, customer, device)
	if err != nil {
		fail(err)
	}
	secret, err := enrolTOTP(identityURL, party.GetPartyId(), first.GetAccessToken(), device)
	if err != nil {
		fail(err)
	}
	again, err := startAuthentication(zc, customer, device)
	if err != nil {
		fail(err)
	}
	ctx, cancel = zc.Context(bg, zcclient.CallOptions{Token: again.GetAccessToken()})
	// the next time step's code: the enrolment used this one, and codes are single use
	aal2, err := zc.Identity.CompleteAuthentication(ctx, &gatewayv1.CompleteAuthenticationRequest{
		Factor: gatewayv1.SecondFactor_SECOND_FACTOR_TOTP, Code: totp(secret, time.Now().Add(30*time.Second)), DeviceId: device,
	})
	cancel()
	if err != nil {
		fail(err)
	}
	fmt.Printf("authenticated %s\n", aal2.GetAssuranceLevel())
	token := aal2.GetAccessToken()

	// KYC
	ctx, cancel = zc.Context(bg, zcclient.CallOptions{Token: token, Idempotent: true})
	verified, err := zc.Identity.VerifyCustomer(ctx, &gatewayv1.VerifyCustomerRequest{PartyId: party.GetPartyId()})
	cancel()
	if err != nil {
		fail(err)
	}
	fmt.Printf("verified %s\n", verified.GetParty().GetKycLevel())

	// a refusal, to show its details: a malformed application id
	call = zcclient.Call{}
	ctx, cancel = zc.Context(bg, zcclient.CallOptions{Token: token})
	_, err = zc.Loans.GetLoanApplication(ctx, &gatewayv1.GetLoanApplicationRequest{ApplicationId: "not-an-id"}, call.Options()...)
	cancel()
	if d := zcclient.Details(err); d != nil {
		fields := make([]string, 0, len(d.FieldViolations))
		for f := range d.FieldViolations {
			fields = append(fields, f)
		}
		fmt.Printf("refused as expected: %s %s fields %s request-id %s trailer %s\n",
			d.Code, d.Reason, strings.Join(fields, ","), d.RequestID, call.RequestID())
	}

	// apply (the loan service learns of the party from identity's events: retry until it has)
	request := &gatewayv1.ApplyForLoanRequest{
		PartyId: party.GetPartyId(), ProductId: "merchant-310",
		Amount:     &commonv1.Money{CurrencyCode: "CNY", MinorUnits: amountFen},
		TermMonths: 12, Purpose: "inventory", DeviceId: device,
	}
	key := zcclient.NewKey() // one key for every try: a retry is the same request
	started := time.Now()
	var application *gatewayv1.LoanApplication
	for application == nil {
		call = zcclient.Call{}
		ctx, cancel = zc.Context(bg, zcclient.CallOptions{Token: token, Key: key})
		applied, err := zc.Loans.ApplyForLoan(ctx, request, call.Options()...)
		cancel()
		switch {
		case err == nil:
			application = applied.GetApplication()
		case zcclient.Details(err).Code == codes.PermissionDenied && time.Since(started) < 30*time.Second:
			time.Sleep(300 * time.Millisecond)
		default:
			fail(err)
		}
	}
	fmt.Printf("applied %s %s request-id %s\n", application.GetApplicationId(), application.GetState(), call.RequestID())

	// watch until decided, accept, watch on until the loan is paid out
	ctx, cancel = zc.ContextTimeout(bg, 120*time.Second, zcclient.CallOptions{Token: token})
	defer cancel()
	stream, err := zc.Loans.WatchLoanApplication(ctx, &gatewayv1.WatchLoanApplicationRequest{ApplicationId: application.GetApplicationId()})
	if err != nil {
		fail(err)
	}
	fmt.Printf("watching request-id %s\n", zcclient.StreamRequestID(stream))
	accepted := false
	for {
		update, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Println("stream ended before a terminal state")
			return 3
		}
		if err != nil {
			fail(err)
		}
		app, loan := update.GetApplication(), update.GetLoan()
		fmt.Printf("  %6.2f s  %-14s loan %-10s %s\n", time.Since(started).Seconds(), app.GetState(), orDash(loan.GetState()), update.GetEvent())
		if (app.GetState() == "APPROVED" || app.GetState() == "DECLINED") && !accepted {
			fmt.Printf("decided %s\n", app.GetState())
		}
		if app.GetState() == "APPROVED" && !accepted {
			accepted = true
			call = zcclient.Call{}
			actx, acancel := zc.Context(bg, zcclient.CallOptions{Token: token, Idempotent: true})
			acceptedLoan, err := zc.Loans.AcceptLoanOffer(actx, &gatewayv1.AcceptLoanOfferRequest{ApplicationId: app.GetApplicationId()}, call.Options()...)
			acancel()
			if err != nil {
				fail(err)
			}
			fmt.Printf("accepted loan %s request-id %s\n", acceptedLoan.GetLoan().GetLoanId(), call.RequestID())
		}
		if update.GetTerminal() {
			if loan.GetState() == "DISBURSED" {
				fmt.Printf("disbursed %s\n", loan.GetLoanId())
				return 0
			}
			fmt.Printf("ended %s\n", app.GetState())
			return 2
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func startAuthentication(zc *zcclient.Client, c *gatewayv1.RegisterCustomerRequest, device string) (*gatewayv1.StartAuthenticationResponse, error) {
	ctx, cancel := zc.Context(context.Background())
	defer cancel()
	return zc.Identity.StartAuthentication(ctx, &gatewayv1.StartAuthenticationRequest{
		Phone: c.GetPhone(), Password: password, DeviceId: device,
	})
}

// sampleCustomer is a made-up customer with a valid resident ID (GB 11643) and mobile number.
func sampleCustomer() *gatewayv1.RegisterCustomerRequest {
	birth := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, rand.IntN(9000))
	body := fmt.Sprintf("110105%s%03d", birth.Format("20060102"), rand.IntN(1000))
	return &gatewayv1.RegisterCustomerRequest{
		Name: "示例商户", ResidentId: body + residentIDCheck(body),
		Phone:       fmt.Sprintf("+86139%08d", rand.IntN(100_000_000)),
		DateOfBirth: birth.Format("2006-01-02"), Address: "北京市朝阳区建国路88号", Password: password,
	}
}

func residentIDCheck(body string) string {
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, w := range weights {
		sum += int(body[i]-'0') * w
	}
	return string("10X98765432"[sum%11])
}

// enrolTOTP is what the customer's authenticator app does with identity: enrol, confirm.
func enrolTOTP(identityURL, partyID, token, device string) (string, error) {
	post := func(path string, body any) (map[string]any, error) {
		raw, _ := json.Marshal(body)
		req, err := http.NewRequest(http.MethodPost, identityURL+path, bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Device-Id", device)
		req.Header.Set("Idempotency-Key", zcclient.NewKey())
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out := map[string]any{}
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return nil, fmt.Errorf("identity %s: %d %s", path, resp.StatusCode, data)
		}
		_ = json.Unmarshal(data, &out)
		return out, nil
	}
	enrolment, err := post("/v1/customers/"+partyID+"/factors/totp", map[string]any{})
	if err != nil {
		return "", err
	}
	secret, _ := enrolment["secret"].(string)
	_, err = post("/v1/customers/"+partyID+"/factors/totp/confirmation", map[string]string{"code": totp(secret, time.Now())})
	return secret, err
}

// totp is RFC 6238 (SHA-1, 6 digits, 30 s), as identity uses it.
func totp(secret string, at time.Time) string {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		fail(fmt.Errorf("TOTP secret: %w", err))
	}
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(at.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(counter[:])
	sum := mac.Sum(nil)
	offset := sum[len(sum)-1] & 0x0f
	code := binary.BigEndian.Uint32(sum[offset:offset+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", code%1_000_000)
}
