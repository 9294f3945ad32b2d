package com.zerocontact.client;

import com.zerocontact.common.v1.Money;
import com.zerocontact.gateway.v1.AcceptLoanOfferRequest;
import com.zerocontact.gateway.v1.ApplyForLoanRequest;
import com.zerocontact.gateway.v1.CompleteAuthenticationRequest;
import com.zerocontact.gateway.v1.CompleteAuthenticationResponse;
import com.zerocontact.gateway.v1.GetLoanApplicationRequest;
import com.zerocontact.gateway.v1.Loan;
import com.zerocontact.gateway.v1.LoanApplication;
import com.zerocontact.gateway.v1.Party;
import com.zerocontact.gateway.v1.RegisterCustomerRequest;
import com.zerocontact.gateway.v1.SecondFactor;
import com.zerocontact.gateway.v1.StartAuthenticationRequest;
import com.zerocontact.gateway.v1.StartAuthenticationResponse;
import com.zerocontact.gateway.v1.VerifyCustomerRequest;
import com.zerocontact.gateway.v1.WatchLoanApplicationRequest;
import com.zerocontact.gateway.v1.WatchLoanApplicationResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.time.LocalDate;
import java.time.format.DateTimeFormatter;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The 310 loan journey through the gateway, in Java (examples/partner_310.py does the same in
 * Python): register a customer, enrol an authenticator with identity (the customer's own app
 * does this, never the partner), authenticate with two factors, become KYC VERIFIED, apply for
 * merchant-310, watch the application until it is decided, accept the offer and watch on until
 * the loan is disbursed. It prints each call's request id and shows a refusal's google.rpc
 * details on a deliberately malformed call.
 *
 * <pre>
 * java -jar clients/java/target/zerocontact-client.jar --target localhost:50051 --ca ca.crt \
 *     --cert shop-a.crt --key shop-a.key --credential zcp_... --identity-url http://127.0.0.1:8001
 * </pre>
 */
public final class Journey {
  private static final String PASSWORD = "correct horse battery staple";
  private static final Random RANDOM = new Random();

  private Journey() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = new HashMap<>();
    args.put("target", "localhost:50051");
    args.put("identity-url", "http://127.0.0.1:8001");
    args.put("amount-fen", "5000000");
    args.put("credential", System.getenv().getOrDefault("ZC_PARTNER_CREDENTIAL", ""));
    for (int i = 0; i + 1 < argv.length; i += 2) {
      args.put(argv[i].replaceFirst("^--", ""), argv[i + 1]);
    }
    int code;
    try (PartnerClient zc =
        PartnerClient.connect(
            args.get("target"),
            Path.of(args.get("ca")),
            Path.of(args.get("cert")),
            Path.of(args.get("key")),
            args.get("credential"),
            args.get("server-name"))) {
      code = journey(zc, args.get("identity-url"), Long.parseLong(args.get("amount-fen")));
    } catch (StatusRuntimeException e) {
      PartnerClient.ErrorDetails d = PartnerClient.ErrorDetails.of(e);
      System.out.printf(
          "refused: %s %s \"%s\" request-id %s%n", d.code, d.reason, d.message, d.requestId);
      code = 1;
    }
    System.exit(code);
  }

  static int journey(PartnerClient zc, String identityUrl, long amountFen) throws Exception {
    // register
    RegisterCustomerRequest customer = sampleCustomer();
    PartnerClient.Call call = zc.call().idempotent();
    Party party = call.identity().registerCustomer(customer).getParty();
    System.out.printf(
        "registered %s (%s) %s request-id %s%n",
        party.getPartyId(), party.getPhoneMasked(), party.getKycLevel(), call.requestId());

    // two factors: password, the customer's app enrols TOTP with identity, then TOTP
    String device = "device-" + PartnerClient.newKey().substring(0, 8);
    StartAuthenticationResponse first = startAuthentication(zc, customer, device);
    String secret = enrolTotp(identityUrl, party.getPartyId(), first.getAccessToken(), device);
    StartAuthenticationResponse again = startAuthentication(zc, customer, device);
    // the next time step's code: the enrolment used this one, and codes are single use
    CompleteAuthenticationResponse aal2 =
        zc.call()
            .token(again.getAccessToken())
            .identity()
            .completeAuthentication(
                CompleteAuthenticationRequest.newBuilder()
                    .setFactor(SecondFactor.SECOND_FACTOR_TOTP)
                    .setCode(totp(secret, System.currentTimeMillis() / 1000 + 30))
                    .setDeviceId(device)
                    .build());
    System.out.printf("authenticated %s%n", aal2.getAssuranceLevel());
    String token = aal2.getAccessToken();

    // KYC
    Party verified =
        zc.call()
            .token(token)
            .idempotent()
            .identity()
            .verifyCustomer(VerifyCustomerRequest.newBuilder().setPartyId(party.getPartyId()).build())
            .getParty();
    System.out.printf("verified %s%n", verified.getKycLevel());

    // a refusal, to show its details: a malformed application id
    call = zc.call().token(token);
    try {
      call.loans()
          .getLoanApplication(
              GetLoanApplicationRequest.newBuilder().setApplicationId("not-an-id").build());
    } catch (StatusRuntimeException e) {
      PartnerClient.ErrorDetails d = PartnerClient.ErrorDetails.of(e);
      System.out.printf(
          "refused as expected: %s %s fields %s request-id %s trailer %s%n",
          d.code,
          d.reason,
          String.join(",", d.fieldViolations.keySet()),
          d.requestId,
          call.requestId());
    }

    // apply (the loan service learns of the party from identity's events: retry until it has)
    ApplyForLoanRequest request =
        ApplyForLoanRequest.newBuilder()
            .setPartyId(party.getPartyId())
            .setProductId("merchant-310")
            .setAmount(Money.newBuilder().setCurrencyCode("CNY").setMinorUnits(amountFen))
            .setTermMonths(12)
            .setPurpose("inventory")
            .setDeviceId(device)
            .build();
    String key = PartnerClient.newKey(); // one key for every try: a retry is the same request
    long started = System.nanoTime();
    LoanApplication application = null;
    while (application == null) {
      call = zc.call().token(token).key(key);
      try {
        application = call.loans().applyForLoan(request).getApplication();
      } catch (StatusRuntimeException e) {
        if (e.getStatus().getCode() != Status.Code.PERMISSION_DENIED
            || System.nanoTime() - started > 30_000_000_000L) {
          throw e;
        }
        Thread.sleep(300);
      }
    }
    System.out.printf(
        "applied %s %s request-id %s%n",
        application.getApplicationId(), application.getState(), call.requestId());

    // watch until decided, accept, watch on until the loan is paid out
    PartnerClient.Call watch = zc.call().token(token).deadline(Duration.ofSeconds(120));
    Iterator<WatchLoanApplicationResponse> updates =
        watch
            .loans()
            .watchLoanApplication(
                WatchLoanApplicationRequest.newBuilder()
                    .setApplicationId(application.getApplicationId())
                    .build());
    boolean accepted = false;
    boolean announced = false;
    while (updates.hasNext()) {
      WatchLoanApplicationResponse update = updates.next();
      if (!announced) {
        System.out.printf("watching request-id %s%n", watch.requestId());
        announced = true;
      }
      LoanApplication app = update.getApplication();
      Loan loan = update.getLoan();
      System.out.printf(
          "  %6.2f s  %-14s loan %-10s %s%n",
          (System.nanoTime() - started) / 1e9,
          app.getState(),
          loan.getState().isEmpty() ? "-" : loan.getState(),
          update.getEvent());
      if (!accepted && (app.getState().equals("APPROVED") || app.getState().equals("DECLINED"))) {
        System.out.printf("decided %s%n", app.getState());
      }
      if (!accepted && app.getState().equals("APPROVED")) {
        accepted = true;
        call = zc.call().token(token).idempotent();
        Loan acceptedLoan =
            call.loans()
                .acceptLoanOffer(
                    AcceptLoanOfferRequest.newBuilder()
                        .setApplicationId(app.getApplicationId())
                        .build())
                .getLoan();
        System.out.printf(
            "accepted loan %s request-id %s%n", acceptedLoan.getLoanId(), call.requestId());
      }
      if (update.getTerminal()) {
        if (loan.getState().equals("DISBURSED")) {
          System.out.printf("disbursed %s%n", loan.getLoanId());
          return 0;
        }
        System.out.printf("ended %s%n", app.getState());
        return 2;
      }
    }
    System.out.println("stream ended before a terminal state");
    return 3;
  }

  static StartAuthenticationResponse startAuthentication(
      PartnerClient zc, RegisterCustomerRequest customer, String device) {
    return zc.call()
        .identity()
        .startAuthentication(
            StartAuthenticationRequest.newBuilder()
                .setPhone(customer.getPhone())
                .setPassword(PASSWORD)
                .setDeviceId(device)
                .build());
  }

  /** A made-up customer with a valid resident ID (GB 11643) and mobile number. */
  static RegisterCustomerRequest sampleCustomer() {
    LocalDate birth = LocalDate.of(1980, 1, 1).plusDays(RANDOM.nextInt(9000));
    String body =
        "110105"
            + birth.format(DateTimeFormatter.BASIC_ISO_DATE)
            + String.format("%03d", RANDOM.nextInt(1000));
    int[] weights = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
    int sum = 0;
    for (int i = 0; i < weights.length; i++) {
      sum += (body.charAt(i) - '0') * weights[i];
    }
    return RegisterCustomerRequest.newBuilder()
        .setName("示例商户")
        .setResidentId(body + "10X98765432".charAt(sum % 11))
        .setPhone(String.format("+86139%08d", RANDOM.nextInt(100_000_000)))
        .setDateOfBirth(birth.toString())
        .setAddress("北京市朝阳区建国路88号")
        .setPassword(PASSWORD)
        .build();
  }

  /** What the customer's authenticator app does with identity: enrol, confirm. */
  static String enrolTotp(String identityUrl, String partyId, String token, String device)
      throws IOException, InterruptedException, GeneralSecurityException {
    HttpClient http =
        HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1) // identity is HTTP/1.1 (no h2c upgrade)
            .connectTimeout(Duration.ofSeconds(10))
            .build();
    String enrolment =
        post(http, identityUrl + "/v1/customers/" + partyId + "/factors/totp", "{}", token, device);
    Matcher m = Pattern.compile("\"secret\"\\s*:\\s*\"([A-Z2-7=]+)\"").matcher(enrolment);
    if (!m.find()) {
      throw new IOException("no TOTP secret in identity's answer");
    }
    String secret = m.group(1);
    String code = totp(secret, System.currentTimeMillis() / 1000);
    post(
        http,
        identityUrl + "/v1/customers/" + partyId + "/factors/totp/confirmation",
        "{\"code\":\"" + code + "\"}",
        token,
        device);
    return secret;
  }

  private static String post(HttpClient http, String url, String json, String token, String device)
      throws IOException, InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(10))
            .header("Authorization", "Bearer " + token)
            .header("X-Device-Id", device)
            .header("Idempotency-Key", PartnerClient.newKey())
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build();
    HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() >= 300) {
      throw new IOException("identity " + url + ": " + response.statusCode() + " " + response.body());
    }
    return response.body();
  }

  /** RFC 6238 (SHA-1, 6 digits, 30 s), as identity uses it. */
  static String totp(String secret, long unixSeconds) throws GeneralSecurityException {
    Mac mac = Mac.getInstance("HmacSHA1");
    mac.init(new SecretKeySpec(base32(secret), "HmacSHA1"));
    byte[] sum = mac.doFinal(ByteBuffer.allocate(8).putLong(unixSeconds / 30).array());
    int offset = sum[sum.length - 1] & 0x0f;
    int code = ByteBuffer.wrap(sum, offset, 4).getInt() & 0x7fffffff;
    return String.format("%06d", code % 1_000_000);
  }

  private static byte[] base32(String text) {
    String alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    String s = text.replace("=", "").toUpperCase();
    byte[] out = new byte[s.length() * 5 / 8];
    int buffer = 0;
    int bits = 0;
    int n = 0;
    for (char c : s.toCharArray()) {
      buffer = (buffer << 5) | alphabet.indexOf(c);
      bits += 5;
      if (bits >= 8) {
        out[n++] = (byte) (buffer >> (bits - 8));
        bits -= 8;
      }
    }
    return out;
  }
}
