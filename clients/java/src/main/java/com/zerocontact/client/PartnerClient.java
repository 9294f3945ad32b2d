package com.zerocontact.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RequestInfo;
import com.google.rpc.RetryInfo;
import com.zerocontact.gateway.v1.IdentityServiceGrpc;
import com.zerocontact.gateway.v1.LoanServiceGrpc;
import com.zerocontact.gateway.v1.PayrollServiceGrpc;
import com.zerocontact.gateway.v1.SignalServiceGrpc;
import io.grpc.ChannelCredentials;
import io.grpc.ClientInterceptor;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.AbstractStub;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

/**
 * One partner's connection to zerocontact's gateway: mTLS with the partner's certificate (PEM
 * files), the partner credential on every call, the party's token and an idempotency key where
 * a call needs them, a deadline per call, the request id of every call and the google.rpc
 * details of a refusal. The stubs are the generated ones (com.zerocontact.gateway.v1).
 *
 * <pre>
 * try (PartnerClient zc = PartnerClient.connect("gateway.example:50051", ca, cert, key, "zcp_...", null)) {
 *   PartnerClient.Call call = zc.call();
 *   var products = call.loans().listLoanProducts(ListLoanProductsRequest.getDefaultInstance());
 *   System.out.println(call.requestId());
 * }
 * </pre>
 */
public final class PartnerClient implements AutoCloseable {
  /** The metadata key of the request id (trailers of every call; headers of a stream too). */
  public static final Metadata.Key<String> REQUEST_ID =
      Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER);

  private static final Metadata.Key<String> CREDENTIAL =
      Metadata.Key.of("x-partner-credential", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> IDEMPOTENCY_KEY =
      Metadata.Key.of("idempotency-key", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final String credential;
  private Duration timeout = Duration.ofSeconds(10);

  private PartnerClient(ManagedChannel channel, String credential) {
    this.channel = channel;
    this.credential = credential;
  }

  /**
   * An mTLS channel presenting the partner's certificate.
   *
   * @param serverName the TLS name to verify instead of the target's host, or null
   */
  public static PartnerClient connect(
      String target, Path ca, Path cert, Path key, String credential, String serverName)
      throws IOException {
    return connect(target, ca, cert, key, credential, serverName, null);
  }

  /** As above, with a gRPC service config (retry policy, timeouts; parsed JSON), or null. */
  public static PartnerClient connect(
      String target,
      Path ca,
      Path cert,
      Path key,
      String credential,
      String serverName,
      Map<String, ?> serviceConfig)
      throws IOException {
    ChannelCredentials tls =
        TlsChannelCredentials.newBuilder()
            .keyManager(cert.toFile(), key.toFile())
            .trustManager(ca.toFile())
            .build();
    ManagedChannelBuilder<?> builder = Grpc.newChannelBuilder(target, tls);
    if (serverName != null && !serverName.isEmpty()) {
      builder.overrideAuthority(serverName);
    }
    if (serviceConfig != null) {
      builder.defaultServiceConfig(serviceConfig).enableRetry();
    }
    return new PartnerClient(builder.build(), credential);
  }

  /** The deadline of each unary call (default 10 s; the gateway caps it at 30 s). */
  public PartnerClient withTimeout(Duration timeout) {
    this.timeout = timeout;
    return this;
  }

  /** A fresh idempotency key (keep it to retry the same call). */
  public static String newKey() {
    return UUID.randomUUID().toString().replace("-", "");
  }

  /** A call (or a stream): set its token and key, take a stub, then read its request id. */
  public Call call() {
    return new Call();
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
  }

  /** One call's metadata, deadline and captured headers/trailers. */
  public final class Call {
    private final Metadata metadata = new Metadata();
    private final AtomicReference<Metadata> headers = new AtomicReference<>();
    private final AtomicReference<Metadata> trailers = new AtomicReference<>();
    private Duration deadline = timeout;

    private Call() {
      metadata.put(CREDENTIAL, credential);
    }

    /** The party's access token ({@code authorization: Bearer}). */
    public Call token(String token) {
      metadata.put(AUTHORIZATION, "Bearer " + token);
      return this;
    }

    /** An idempotency key (mutating RPCs); {@link #idempotent()} makes a fresh one. */
    public Call key(String key) {
      metadata.put(IDEMPOTENCY_KEY, key);
      return this;
    }

    public Call idempotent() {
      return key(newKey());
    }

    /** Another deadline for this call (a watch stream's, say). */
    public Call deadline(Duration deadline) {
      this.deadline = deadline;
      return this;
    }

    private <S extends AbstractStub<S>> S prepare(S stub) {
      ClientInterceptor attach = MetadataUtils.newAttachHeadersInterceptor(metadata);
      ClientInterceptor capture = MetadataUtils.newCaptureMetadataInterceptor(headers, trailers);
      return stub.withInterceptors(capture, attach)
          .withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
    }

    public IdentityServiceGrpc.IdentityServiceBlockingStub identity() {
      return prepare(IdentityServiceGrpc.newBlockingStub(channel));
    }

    public LoanServiceGrpc.LoanServiceBlockingStub loans() {
      return prepare(LoanServiceGrpc.newBlockingStub(channel));
    }

    public PayrollServiceGrpc.PayrollServiceBlockingStub payroll() {
      return prepare(PayrollServiceGrpc.newBlockingStub(channel));
    }

    public SignalServiceGrpc.SignalServiceBlockingStub signals() {
      return prepare(SignalServiceGrpc.newBlockingStub(channel));
    }

    /** The request id: from the trailers once the call ended, else a stream's headers. */
    public String requestId() {
      for (Metadata md : new Metadata[] {trailers.get(), headers.get()}) {
        if (md != null && md.get(REQUEST_ID) != null) {
          return md.get(REQUEST_ID);
        }
      }
      return null;
    }
  }

  /** A refused call with the gateway's google.rpc details unpacked. */
  public static final class ErrorDetails {
    public final Status.Code code;
    public final String message;
    public String reason = ""; // ErrorInfo.reason, e.g. LOAN_NOT_FOUND
    public String domain = ""; // ErrorInfo.domain: gateway.zerocontact
    public final Map<String, String> metadata = new LinkedHashMap<>(); // ErrorInfo.metadata
    public final Map<String, String> fieldViolations = new LinkedHashMap<>(); // BadRequest
    public Duration retryDelay; // RetryInfo, or null
    public String requestId; // RequestInfo.request_id, else the x-request-id trailer
    public String servingData = ""; // RequestInfo.serving_data: the method that answered

    private ErrorDetails(Status.Code code, String message) {
      this.code = code;
      this.message = message;
    }

    public static ErrorDetails of(StatusRuntimeException error) {
      ErrorDetails out =
          new ErrorDetails(error.getStatus().getCode(), error.getStatus().getDescription());
      Metadata trailers = error.getTrailers();
      out.requestId = trailers == null ? null : trailers.get(REQUEST_ID);
      com.google.rpc.Status status = StatusProto.fromThrowable(error);
      if (status == null) {
        return out;
      }
      for (Any detail : status.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            out.reason = info.getReason();
            out.domain = info.getDomain();
            out.metadata.putAll(info.getMetadataMap());
          } else if (detail.is(BadRequest.class)) {
            for (BadRequest.FieldViolation v :
                detail.unpack(BadRequest.class).getFieldViolationsList()) {
              out.fieldViolations.put(v.getField(), v.getDescription());
            }
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration d = detail.unpack(RetryInfo.class).getRetryDelay();
            out.retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
          } else if (detail.is(RequestInfo.class)) {
            RequestInfo info = detail.unpack(RequestInfo.class);
            out.requestId = info.getRequestId();
            out.servingData = info.getServingData();
          }
        } catch (InvalidProtocolBufferException e) {
          // a detail that does not parse is skipped: the status itself still says what failed
        }
      }
      return out;
    }

    @Override
    public String toString() {
      return code + " " + reason + ": " + message + " (request id " + requestId + ")";
    }
  }
}
