"""The words of the public pages, per language: a table, not branches.

A page speaks the customer's language when it is one of these (matched on the primary
subtag: `zh-Hans` and `zh-CN` get `zh`), else English. `RTL` lists the right-to-left ones.
"""

from __future__ import annotations

DEFAULT = "en"
RTL = frozenset({"fa"})

UNSUBSCRIBE: dict[str, dict[str, str]] = {
    "en": {
        "title": "Unsubscribe",
        "question": "Do you want to stop receiving automated emails from us?",
        "explain": "Nothing changes until you press one of the buttons.",
        "choice": "Your choice",
        "all": "Unsubscribe from all emails",
        "fewer": "Fewer emails: only about my purchases",
        "done_all": "You are unsubscribed. You will receive no more automated emails from us.",
        "done_fewer": "Done. From now on you will only receive emails about your purchases.",
        "already": "You are already unsubscribed.",
    },
    "th": {
        "title": "ยกเลิกการรับอีเมล",
        "question": "คุณต้องการหยุดรับอีเมลอัตโนมัติจากเราหรือไม่?",
        "explain": "จะไม่มีการเปลี่ยนแปลงใด ๆ จนกว่าคุณจะกดปุ่ม",
        "choice": "ตัวเลือกของคุณ",
        "all": "ยกเลิกการรับอีเมลทั้งหมด",
        "fewer": "รับอีเมลน้อยลง: เฉพาะเรื่องการสั่งซื้อของฉัน",
        "done_all": "ยกเลิกการรับอีเมลเรียบร้อยแล้ว คุณจะไม่ได้รับอีเมลอัตโนมัติจากเราอีก",
        "done_fewer": "เรียบร้อยแล้ว ต่อจากนี้คุณจะได้รับเฉพาะอีเมลเกี่ยวกับการสั่งซื้อของคุณ",
        "already": "คุณได้ยกเลิกการรับอีเมลไปแล้ว",
    },
    "zh": {
        "title": "退订邮件",
        "question": "您想停止接收我们的自动邮件吗？",
        "explain": "在您点击按钮之前，不会有任何更改。",
        "choice": "您的选择",
        "all": "退订所有邮件",
        "fewer": "减少邮件：只接收与我的订单有关的邮件",
        "done_all": "您已成功退订，将不会再收到我们的自动邮件。",
        "done_fewer": "已设置。今后您只会收到与您的订单有关的邮件。",
        "already": "您已经退订了。",
    },
    "fa": {
        "title": "لغو اشتراک ایمیل",
        "question": "آیا می‌خواهید دیگر ایمیل‌های خودکار ما را دریافت نکنید؟",
        "explain": "تا زمانی که یکی از دکمه‌ها را نزنید، چیزی تغییر نمی‌کند.",
        "choice": "انتخاب شما",
        "all": "لغو دریافت همهٔ ایمیل‌ها",
        "fewer": "ایمیل کمتر: فقط دربارهٔ خریدهای من",
        "done_all": "اشتراک شما لغو شد. دیگر ایمیل خودکاری از ما دریافت نخواهید کرد.",
        "done_fewer": "انجام شد. از این پس فقط ایمیل‌های مربوط به خریدهایتان را دریافت می‌کنید.",
        "already": "اشتراک شما قبلاً لغو شده است.",
    },
    "km": {
        "title": "ឈប់ទទួលអ៊ីមែល",
        "question": "តើអ្នកចង់ឈប់ទទួលអ៊ីមែលស្វ័យប្រវត្តិពីយើងឬទេ?",
        "explain": "គ្មានអ្វីផ្លាស់ប្តូរទេ រហូតដល់អ្នកចុចប៊ូតុងណាមួយ។",
        "choice": "ជម្រើសរបស់អ្នក",
        "all": "ឈប់ទទួលអ៊ីមែលទាំងអស់",
        "fewer": "អ៊ីមែលតិចជាងនេះ៖ តែអំពីការទិញរបស់ខ្ញុំប៉ុណ្ណោះ",
        "done_all": "អ្នកបានឈប់ទទួលអ៊ីមែលហើយ។ អ្នកនឹងមិនទទួលបានអ៊ីមែលស្វ័យប្រវត្តិពីយើងទៀតទេ។",
        "done_fewer": "រួចរាល់។ ចាប់ពីពេលនេះ អ្នកនឹងទទួលបានតែអ៊ីមែលអំពីការទិញរបស់អ្នកប៉ុណ្ណោះ។",
        "already": "អ្នកបានឈប់ទទួលអ៊ីមែលរួចហើយ។",
    },
}


def language_of(tag: str | None) -> str:
    """The page language for a customer's language tag (BCP 47), else `DEFAULT`."""
    primary = (tag or "").strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in UNSUBSCRIBE else DEFAULT
