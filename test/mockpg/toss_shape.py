#!/usr/bin/env python3
"""test/mockpg/toss_shape.py: check that an answer of coupon-mockpg has the
shape of Toss Payments v1 (API version 2022-11-16), member by member.

    toss_shape.py payment STATUS < body     a Payment object in that status
    toss_shape.py transactions < body       a GET /v1/transactions list
    toss_shape.py error < body              an error envelope {code, message}

Prints one line per problem and exits 1 when there is any; a missing,
extra, reordered or mis-typed member is a problem, and so are times that
are not ISO 8601 in +09:00 (or not near the clock, for `payment`), a
method label that is not Korean, and a supplied amount or VAT that is not
what Toss's rule gives: vat = (balance - taxFreeAmount) / 11 rounded half
up, suppliedAmount = balance - taxFreeAmount - vat.
"""
import datetime
import json
import re
import sys

KST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+09:00$")
TXKEY = re.compile(r"^txn_\d{12}$")
CARD_LABEL = "카드"

PAYMENT_MEMBERS = [
    "version", "paymentKey", "type", "orderId", "orderName", "mId", "currency",
    "method", "totalAmount", "balanceAmount", "status", "requestedAt", "approvedAt",
    "useEscrow", "lastTransactionKey", "suppliedAmount", "vat", "cultureExpense",
    "taxFreeAmount", "taxExemptionAmount", "cancels", "isPartialCancelable", "card",
    "virtualAccount", "secret", "mobilePhone", "giftCertificate", "transfer",
    "metadata", "receipt", "checkout", "easyPay", "country", "failure",
    "cashReceipt", "cashReceipts", "discount",
]
CANCEL_MEMBERS = [
    "transactionKey", "cancelReason", "taxExemptionAmount", "canceledAt",
    "easyPayDiscountAmount", "receiptKey", "cancelStatus", "cancelRequestId",
    "cancelAmount", "taxFreeAmount", "refundableAmount",
]
CARD_MEMBERS = [
    "amount", "issuerCode", "acquirerCode", "number", "installmentPlanMonths",
    "approveNo", "useCardPoint", "cardType", "ownerType", "acquireStatus",
    "isInterestFree", "interestPayer",
]
TRANSACTION_MEMBERS = [
    "mId", "transactionKey", "paymentKey", "orderId", "currency", "method",
    "customerKey", "useEscrow", "receiptUrl", "status", "transactionAt", "amount",
    "type",
]
# members that only other methods (or features the mock lacks) fill in
ALWAYS_NULL = [
    "virtualAccount", "secret", "mobilePhone", "giftCertificate", "transfer",
    "metadata", "easyPay", "cashReceipt", "cashReceipts", "discount",
]

problems = []


def problem(text):
    problems.append(text)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def members(obj, names, what):
    """obj is an object with exactly these members, in this order"""
    if not isinstance(obj, dict):
        problem("%s is not an object: %r" % (what, obj))
        return False
    if list(obj.keys()) != names:
        missing = [n for n in names if n not in obj]
        extra = [n for n in obj if n not in names]
        problem("%s members: missing %s, extra %s%s" % (
            what, missing, extra,
            "" if missing or extra else ", order differs"))
        return False
    return True


def want(cond, text):
    if not cond:
        problem(text)


def kst_time(v, what, near_now=False):
    if not isinstance(v, str) or not KST.match(v):
        problem("%s is not ISO 8601 with +09:00: %r" % (what, v))
        return None
    t = datetime.datetime.fromisoformat(v)
    if near_now:
        now = datetime.datetime.now(datetime.timezone.utc)
        if abs((t - now).total_seconds()) > 3 * 3600:
            problem("%s %s is not the time now (%s UTC)" % (what, v, now.isoformat()))
    return t


def vat_of(taxable):
    """Toss's VAT: taxable / 11, rounded half up to a whole unit"""
    return (2 * taxable + 11) // 22 if taxable > 0 else 0


def check_payment(d, status):
    if not members(d, PAYMENT_MEMBERS, "Payment"):
        return
    approved = status in ("DONE", "PARTIAL_CANCELED", "CANCELED")
    want(d["version"] == "2022-11-16", "version %r" % d["version"])
    for name in ("paymentKey", "orderId", "orderName", "mId"):
        want(isinstance(d[name], str) and d[name], "%s is not a non-empty string" % name)
    want(d["type"] == "NORMAL", "type %r" % d["type"])
    want(isinstance(d["currency"], str) and re.match(r"^[A-Z]{3}$", d["currency"]),
         "currency %r" % d["currency"])
    if status == "EXPIRED":
        want(d["method"] is None, "method of an EXPIRED payment %r" % d["method"])
    else:
        want(d["method"] == CARD_LABEL, "method %r is not %r" % (d["method"], CARD_LABEL))
    for name in ("totalAmount", "balanceAmount", "suppliedAmount", "vat",
                 "taxFreeAmount", "taxExemptionAmount"):
        want(is_int(d[name]), "%s is not an integer: %r" % (name, d[name]))
    if problems:
        return
    want(d["status"] == status, "status %r, wanted %r" % (d["status"], status))
    requested = kst_time(d["requestedAt"], "requestedAt", near_now=True)
    if approved:
        approved_at = kst_time(d["approvedAt"], "approvedAt", near_now=True)
        want(requested is None or approved_at is None or requested <= approved_at,
             "requestedAt after approvedAt")
    else:
        want(d["approvedAt"] is None, "approvedAt of a payment never approved %r" % d["approvedAt"])
    want(d["useEscrow"] is (None if status == "EXPIRED" else False), "useEscrow %r" % d["useEscrow"])
    want(d["cultureExpense"] is False, "cultureExpense %r" % d["cultureExpense"])
    want(d["isPartialCancelable"] is True, "isPartialCancelable %r" % d["isPartialCancelable"])
    want(d["taxExemptionAmount"] == 0, "taxExemptionAmount %r" % d["taxExemptionAmount"])
    want(d["country"] == "KR", "country %r" % d["country"])
    for name in ALWAYS_NULL:
        want(d[name] is None, "%s is not null: %r" % (name, d[name]))

    # amounts: balance, and VAT from the balance less its tax-free part
    total, balance = d["totalAmount"], d["balanceAmount"]
    base = balance if approved else total
    want(0 <= d["taxFreeAmount"] <= base, "taxFreeAmount %d outside 0..%d" % (d["taxFreeAmount"], base))
    taxable = base - d["taxFreeAmount"]
    want(d["vat"] == vat_of(taxable),
         "vat %d, Toss's rule gives %d (taxable %d)" % (d["vat"], vat_of(taxable), taxable))
    want(d["suppliedAmount"] + d["vat"] + d["taxFreeAmount"] == base,
         "suppliedAmount + vat + taxFreeAmount = %d, not %d" % (
             d["suppliedAmount"] + d["vat"] + d["taxFreeAmount"], base))
    if status == "DONE" or not approved:
        want(balance == total or total < 0, "balanceAmount %d of totalAmount %d" % (balance, total))
    elif status == "PARTIAL_CANCELED":
        want(0 < balance < total, "PARTIAL_CANCELED with balance %d of %d" % (balance, total))
    elif status == "CANCELED":
        want(balance == 0, "CANCELED with balance %d" % balance)

    # cancels: null until the first, then every cancel with its members
    cancels = d["cancels"]
    if status in ("PARTIAL_CANCELED", "CANCELED"):
        if not isinstance(cancels, list) or not cancels:
            problem("cancels of a %s payment: %r" % (status, cancels))
        else:
            left = total
            for i, c in enumerate(cancels):
                what = "cancels[%d]" % i
                if not members(c, CANCEL_MEMBERS, what):
                    continue
                want(isinstance(c["transactionKey"], str) and TXKEY.match(c["transactionKey"]),
                     "%s.transactionKey %r" % (what, c["transactionKey"]))
                want(isinstance(c["cancelReason"], str), "%s.cancelReason" % what)
                kst_time(c["canceledAt"], what + ".canceledAt", near_now=True)
                for name in ("taxExemptionAmount", "easyPayDiscountAmount", "cancelAmount",
                             "taxFreeAmount", "refundableAmount"):
                    want(is_int(c[name]), "%s.%s is not an integer: %r" % (what, name, c[name]))
                want(c["receiptKey"] is None and c["cancelRequestId"] is None,
                     "%s.receiptKey or cancelRequestId not null" % what)
                want(c["cancelStatus"] == "DONE", "%s.cancelStatus %r" % (what, c["cancelStatus"]))
                if is_int(c["cancelAmount"]) and is_int(c["refundableAmount"]):
                    left -= c["cancelAmount"]
                    want(c["refundableAmount"] == left,
                         "%s.refundableAmount %r, not %d" % (what, c["refundableAmount"], left))
                    want(0 <= c["taxFreeAmount"] <= c["cancelAmount"],
                         "%s.taxFreeAmount %r" % (what, c["taxFreeAmount"]))
            want(left == balance, "cancels leave %d, balanceAmount says %d" % (left, balance))
            want(d["lastTransactionKey"] == cancels[-1].get("transactionKey"),
                 "lastTransactionKey is not the last cancel's")
    else:
        want(cancels is None, "cancels of a %s payment is not null: %r" % (status, cancels))

    if approved:
        want(isinstance(d["lastTransactionKey"], str) and TXKEY.match(d["lastTransactionKey"]),
             "lastTransactionKey %r" % d["lastTransactionKey"])
        card = d["card"]
        if members(card, CARD_MEMBERS, "card"):
            want(is_int(card["amount"]) and (card["amount"] == total or total < 0),
                 "card.amount %r" % card["amount"])
            for name in ("issuerCode", "acquirerCode"):
                want(isinstance(card[name], str) and re.match(r"^[0-9A-Z]{2}$", card[name]),
                     "card.%s %r" % (name, card[name]))
            want(isinstance(card["number"], str) and "*" in card["number"], "card.number %r" % card["number"])
            want(card["installmentPlanMonths"] == 0, "card.installmentPlanMonths")
            want(isinstance(card["approveNo"], str) and re.match(r"^\d{8}$", card["approveNo"]),
                 "card.approveNo %r" % card["approveNo"])
            want(card["useCardPoint"] is False and card["isInterestFree"] is False,
                 "card.useCardPoint or isInterestFree")
            want(card["interestPayer"] is None, "card.interestPayer")
            want(card["cardType"] in ("신용", "체크", "기프트", "미확인"), "card.cardType %r" % card["cardType"])
            want(card["ownerType"] in ("개인", "법인", "미확인"), "card.ownerType %r" % card["ownerType"])
            want(card["acquireStatus"] in ("READY", "REQUESTED", "COMPLETED", "CANCEL_REQUESTED", "CANCELED"),
                 "card.acquireStatus %r" % card["acquireStatus"])
        receipt = d["receipt"]
        if members(receipt, ["url"], "receipt"):
            want(isinstance(receipt["url"], str) and receipt["url"].startswith("https://"), "receipt.url")
        want(d["failure"] is None, "failure of an approved payment: %r" % d["failure"])
    else:
        want(d["lastTransactionKey"] is None, "lastTransactionKey of a failed payment")
        want(d["card"] is None and d["receipt"] is None, "card or receipt of a failed payment")
        failure = d["failure"]
        if members(failure, ["code", "message"], "failure"):
            code = {"ABORTED": "REJECT_CARD_PAYMENT", "EXPIRED": "EXPIRED_PAYMENT"}.get(status)
            want(failure["code"] == code, "failure.code %r, wanted %r" % (failure["code"], code))
            want(isinstance(failure["message"], str) and failure["message"], "failure.message")
    checkout = d["checkout"]
    if members(checkout, ["url"], "checkout"):
        want(isinstance(checkout["url"], str) and checkout["url"].endswith("/checkout"), "checkout.url")


def check_transactions(lst):
    if not isinstance(lst, list):
        problem("not a JSON array")
        return
    for i, t in enumerate(lst):
        what = "transactions[%d]" % i
        if not members(t, TRANSACTION_MEMBERS, what):
            continue
        want(isinstance(t["transactionKey"], str) and TXKEY.match(t["transactionKey"]),
             "%s.transactionKey %r" % (what, t["transactionKey"]))
        for name in ("mId", "paymentKey", "orderId", "receiptUrl"):
            want(isinstance(t[name], str) and t[name], "%s.%s" % (what, name))
        want(t["method"] == CARD_LABEL, "%s.method %r" % (what, t["method"]))
        want(t["customerKey"] is None and t["useEscrow"] is False, "%s.customerKey or useEscrow" % what)
        want(is_int(t["amount"]) and t["amount"] > 0, "%s.amount %r" % (what, t["amount"]))
        kst_time(t["transactionAt"], what + ".transactionAt")
        want(t["type"] in ("APPROVE", "CANCEL"), "%s.type %r" % (what, t["type"]))
        want(t["status"] == "DONE" if t["type"] == "APPROVE"
             else t["status"] in ("PARTIAL_CANCELED", "CANCELED"),
             "%s.status %r of a %s" % (what, t["status"], t["type"]))


def main():
    kind = sys.argv[1]
    try:
        body = json.loads(sys.stdin.read())
    except ValueError as e:
        print("not JSON: %s" % e)
        return 1
    if kind == "payment":
        check_payment(body, sys.argv[2])
    elif kind == "transactions":
        check_transactions(body)
    elif kind == "error":
        if members(body, ["code", "message"], "error"):
            want(isinstance(body["code"], str) and re.match(r"^[A-Z_]+$", body["code"]), "code")
            want(isinstance(body["message"], str) and body["message"], "message")
    else:
        print("unknown kind %r" % kind)
        return 2
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
