/**
 * The 310 loan journey through the gateway, in TypeScript (examples/partner_310.py does the
 * same in Python): register a customer, enrol an authenticator with identity (the customer's
 * own app does this, never the partner), authenticate with two factors, become KYC VERIFIED,
 * apply for merchant-310, watch the application until it is decided, accept the offer and
 * watch on until the loan is disbursed. It prints each call's request id and shows a
 * refusal's google.rpc details on a deliberately malformed call.
 *
 *   node clients/ts/dist/journey.js --target localhost:50051 --ca ca.crt --cert shop-a.crt \
 *       --key shop-a.key --credential zcp_... --identity-url http://127.0.0.1:8001
 */
import { createHmac, randomInt } from "node:crypto";
import { parseArgs } from "node:util";
import { Code, ConnectError, PartnerClient, errorDetails, newKey } from "./client.js";
import {
  AssuranceLevel,
  KycLevel,
  SecondFactor,
  type RegisterCustomerRequest,
} from "./gen/zerocontact/gateway/v1/identity_pb.js";
import type { LoanApplication } from "./gen/zerocontact/gateway/v1/loan_pb.js";

const PASSWORD = "correct horse battery staple";

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "localhost:50051" },
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    credential: { type: "string", default: process.env.ZC_PARTNER_CREDENTIAL ?? "" },
    "server-name": { type: "string" },
    "identity-url": { type: "string", default: "http://127.0.0.1:8001" },
    "amount-fen": { type: "string", default: "5000000" },
  },
});

async function journey(): Promise<number> {
  const zc = PartnerClient.connect({
    target: args.target!,
    ca: args.ca!,
    cert: args.cert!,
    key: args.key!,
    credential: args.credential!,
    serverName: args["server-name"],
  });

  // register
  const customer = sampleCustomer();
  let call = zc.call({ idempotent: true });
  const { party } = await zc.identity.registerCustomer(customer, call.options());
  console.log(
    `registered ${party!.partyId} (${party!.phoneMasked}) ${KycLevel[party!.kycLevel]} request-id ${call.requestId}`,
  );

  // two factors: password, the customer's app enrols TOTP with identity, then TOTP
  const device = `device-${newKey().slice(0, 8)}`;
  const start = () =>
    zc.identity.startAuthentication(
      { phone: customer.phone, password: PASSWORD, deviceId: device },
      zc.call().options(),
    );
  const first = await start();
  const secret = await enrolTotp(args["identity-url"]!, party!.partyId, first.accessToken, device);
  const again = await start();
  // the next time step's code: the enrolment used this one, and codes are single use
  const aal2 = await zc.identity.completeAuthentication(
    { factor: SecondFactor.TOTP, code: totp(secret, Date.now() / 1000 + 30), deviceId: device },
    zc.call({ token: again.accessToken }).options(),
  );
  console.log(`authenticated ${AssuranceLevel[aal2.assuranceLevel]}`);
  const token = aal2.accessToken;

  // KYC
  const verified = await zc.identity.verifyCustomer(
    { partyId: party!.partyId },
    zc.call({ token, idempotent: true }).options(),
  );
  console.log(`verified ${KycLevel[verified.party!.kycLevel]}`);

  // a refusal, to show its details: a malformed application id
  call = zc.call({ token });
  try {
    await zc.loans.getLoanApplication({ applicationId: "not-an-id" }, call.options());
  } catch (err) {
    const d = errorDetails(err);
    console.log(
      `refused as expected: ${d.code} ${d.reason} fields ${Object.keys(d.fieldViolations).join(",")} request-id ${d.requestId}`,
    );
  }

  // apply (the loan service learns of the party from identity's events: retry until it has)
  const request = {
    partyId: party!.partyId,
    productId: "merchant-310",
    amount: { currencyCode: "CNY", minorUnits: BigInt(args["amount-fen"]!) },
    termMonths: 12,
    purpose: "inventory",
    deviceId: device,
  };
  const key = newKey(); // one key for every try: a retry is the same request
  const started = performance.now();
  let application: LoanApplication | undefined;
  while (!application) {
    call = zc.call({ token, key });
    try {
      application = (await zc.loans.applyForLoan(request, call.options())).application;
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code !== Code.PermissionDenied || performance.now() - started > 30_000) throw err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  console.log(`applied ${application.applicationId} ${application.state} request-id ${call.requestId}`);

  // watch until decided, accept, watch on until the loan is paid out
  const watch = zc.call({ token, timeoutMs: 120_000 });
  let accepted = false;
  let announced = false;
  for await (const update of zc.loans.watchLoanApplication(
    { applicationId: application.applicationId },
    watch.options(),
  )) {
    if (!announced) {
      console.log(`watching request-id ${watch.requestId}`);
      announced = true;
    }
    const app = update.application!;
    const loanState = update.loan?.state || "-";
    const seconds = ((performance.now() - started) / 1000).toFixed(2).padStart(6);
    console.log(`  ${seconds} s  ${app.state.padEnd(14)} loan ${loanState.padEnd(10)} ${update.event}`);
    if (!accepted && (app.state === "APPROVED" || app.state === "DECLINED")) {
      console.log(`decided ${app.state}`);
    }
    if (!accepted && app.state === "APPROVED") {
      accepted = true;
      call = zc.call({ token, idempotent: true });
      const { loan } = await zc.loans.acceptLoanOffer(
        { applicationId: app.applicationId },
        call.options(),
      );
      console.log(`accepted loan ${loan!.loanId} request-id ${call.requestId}`);
    }
    if (update.terminal) {
      if (update.loan?.state === "DISBURSED") {
        console.log(`disbursed ${update.loan.loanId}`);
        return 0;
      }
      console.log(`ended ${app.state}`);
      return 2;
    }
  }
  console.log("stream ended before a terminal state");
  return 3;
}

/** A made-up customer with a valid resident ID (GB 11643) and mobile number. */
function sampleCustomer(): Omit<RegisterCustomerRequest, "$typeName"> {
  const birth = new Date(Date.UTC(1980, 0, 1) + randomInt(9000) * 86_400_000);
  const iso = birth.toISOString().slice(0, 10);
  const body = `110105${iso.replaceAll("-", "")}${String(randomInt(1000)).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = weights.reduce((s, w, i) => s + w * Number(body[i]), 0);
  return {
    name: "示例商户",
    residentId: body + "10X98765432"[sum % 11],
    phone: `+86139${String(randomInt(100_000_000)).padStart(8, "0")}`,
    dateOfBirth: iso,
    address: "北京市朝阳区建国路88号",
    password: PASSWORD,
  };
}

/** What the customer's authenticator app does with identity: enrol, confirm. */
async function enrolTotp(identityUrl: string, partyId: string, token: string, device: string) {
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${identityUrl}${path}`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "x-device-id": device,
        "idempotency-key": newKey(),
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    if (!r.ok) throw new Error(`identity ${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as Record<string, unknown>;
  };
  const enrolment = await post(`/v1/customers/${partyId}/factors/totp`, {});
  const secret = String(enrolment.secret);
  await post(`/v1/customers/${partyId}/factors/totp/confirmation`, {
    code: totp(secret, Date.now() / 1000),
  });
  return secret;
}

/** RFC 6238 (SHA-1, 6 digits, 30 s), as identity uses it. */
function totp(secret: string, unixSeconds: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const sum = createHmac("sha1", key).update(counter).digest();
  const offset = sum[sum.length - 1] & 0x0f;
  return String((sum.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

journey().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConnectError) {
      const d = errorDetails(err);
      console.log(`refused: ${d.code} ${d.reason} "${d.message}" request-id ${d.requestId}`);
    } else {
      console.log(`failed: ${String(err)}`);
    }
    process.exit(1);
  },
);
