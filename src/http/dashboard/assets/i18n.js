// Every visible string, one table per language. Arabic is the users' language: the groups
// and most contact names are Arabic, and the page lays itself out right-to-left for it.

const en = {
  'app.title': 'WhatsApp Manager',
  'nav.sessions': 'Sessions', 'nav.link': 'Link a number', 'nav.keys': 'Keys', 'nav.nodes': 'Nodes',
  'lang.label': 'Language', signout: 'Sign out',
  'signin.title': 'Sign in', 'signin.help': 'Enter an API key: the admin key or a tenant key. It is kept for this tab only.',
  'signin.key': 'API key', 'signin.submit': 'Sign in',
  'whoami.admin': 'admin', 'whoami.user': 'user {id}', 'live.on': 'Live updates on', 'live.off': 'Live updates paused, reconnecting…',
  'sessions.title': 'Sessions', 'sessions.empty': 'No sessions match.', 'filter.status': 'Status', 'filter.user': 'User',
  'status.all': 'All', 'status.initializing': 'Starting', 'status.qr_ready': 'Waiting for the scan',
  'status.authenticated': 'Scanned, connecting', 'status.ready': 'Ready', 'status.fetching_contacts': 'Fetching contacts',
  'status.disconnected': 'Disconnected', 'status.logged_out': 'Logged out', 'status.error': 'Error',
  'status.not_initialized': 'Not started',
  'col.user': 'User', 'col.place': 'Place', 'col.status': 'Status', 'col.phone': 'Phone', 'col.name': 'Name',
  'col.contacts': 'Contacts', 'col.groups': 'Groups', 'col.activity': 'Last activity', 'col.type': 'Type',
  'col.description': 'Description', 'col.pushName': 'WhatsApp name', 'col.business': 'Business', 'col.tags': 'Tags',
  'col.recipient': 'Recipient', 'col.text': 'Text', 'col.time': 'Time', 'col.event': 'Event', 'col.attempts': 'Attempts',
  'col.result': 'Last result', 'col.next': 'Next try', 'col.prefix': 'Prefix', 'col.created': 'Created',
  'col.used': 'Last used', 'col.node': 'Node', 'col.address': 'Address', 'col.state': 'State',
  'col.sessions': 'Sessions', 'col.started': 'Started', 'col.heartbeat': 'Last heartbeat',
  prev: 'Previous', next: 'Next', save: 'Save', cancel: 'Cancel', confirm: 'Yes', delete: 'Delete',
  refresh: 'Refresh', any: 'Any', yes: 'Yes', no: 'No',
  'link.title': 'Link a number', 'link.start': 'Show the QR code', 'link.countdown': 'New code in',
  'link.seconds': '{n} s', 'link.open': 'Open the session', 'link.need': 'Enter the user and the place (positive numbers).',
  'link.help.none': 'Enter the user and place, then press “Show the QR code”.',
  'link.help.initializing': 'Starting the session… the QR code comes in a moment.',
  'link.help.qr_ready': 'On the phone open WhatsApp → Settings → Linked devices → Link a device, and point the camera at this code.',
  'link.help.authenticated': 'Scanned. Connecting to WhatsApp…',
  'link.help.ready': 'Linked. The number is ready: open the session to fetch its contacts.',
  'link.help.fetching_contacts': 'Linked, and fetching contacts.',
  'link.help.disconnected': 'The connection dropped; the server reconnects by itself. If it stays so, restart the session.',
  'link.help.logged_out': 'The phone unlinked this device. Press “Show the QR code” to link it again.',
  'link.help.error': 'Linking failed. Press “Show the QR code” to try again.',
  'pair.title': 'Or link with a phone number', 'pair.phone': 'Phone number',
  'pair.help': 'On the phone: WhatsApp → Linked devices → Link a device → Link with phone number instead, then type the code.',
  'pair.start': 'Get a pairing code', 'pair.wait': 'Starting the session…',
  'session.title': 'Session', 'session.info': 'Details', 'session.health': 'Health', 'session.recommendations': 'What to do',
  'session.groups': 'Groups and contacts', 'session.send': 'Send a message', 'session.webhooks': 'Webhooks',
  'session.restart': 'Restart', 'session.logout': 'Log out', 'session.none': 'No issues.',
  'confirm.restart': 'Restart this session? Its connection is closed and opened again.',
  'confirm.logout': 'Log this number out? It is unlinked from WhatsApp and needs a new QR scan to come back.',
  'confirm.revoke': 'Revoke this key? Requests with it are refused from now on.',
  'confirm.deleteGroup': 'Delete the group “{name}”? Its contacts stay.',
  'confirm.deleteWebhook': 'Delete this webhook? Pending deliveries fail.',
  'info.session_id': 'Session id', 'info.phone': 'Phone', 'info.name': 'Name', 'info.contacts': 'Contacts',
  'info.groups': 'Groups', 'info.connected': 'Connected', 'info.activity': 'Last activity', 'info.created': 'Created',
  'info.sync': 'Last contact fetch', 'info.fetchError': 'Last fetch error', 'info.error': 'Error',
  'fetch.title': 'Contacts', 'fetch.start': 'Fetch contacts', 'fetch.running': 'Fetching… {processed} of {total}',
  'summary.title': 'Last fetch', 'summary.received': 'Received', 'summary.imported': 'Imported',
  'summary.skipped_groups': 'Skipped: groups', 'summary.skipped_broadcasts': 'Skipped: broadcast lists',
  'summary.skipped_newsletters': 'Skipped: channels', 'summary.skipped_self': 'Skipped: the account itself',
  'summary.skipped_unresolved_lids': 'Skipped: hidden numbers', 'summary.skipped_invalid': 'Skipped: invalid numbers',
  'summary.merged_duplicates': 'Merged duplicates',
  'groups.title': 'Groups', 'back.session': 'Back to the session', 'back.groups': 'Back to the groups',
  'type.auto': 'Automatic', 'type.manual': 'Manual',
  'contacts.search': 'Search', 'contacts.searchIn': 'In', 'search.all': 'Names and numbers', 'search.name': 'Names',
  'search.phone': 'Numbers', 'contacts.business': 'Business', 'contacts.days': 'Active in the last (days)',
  'contacts.tags': 'Tags (all of)', 'contacts.total': 'Contacts:', 'contacts.csv': 'Download CSV', 'contacts.empty': 'No contacts match.',
  'tags.title': 'Tags of', 'tags.help': 'Tags, separated by commas', 'tags.edit': 'Tags',
  'newGroup.title': 'New group from the selected contacts', 'newGroup.selected': 'Selected:', 'newGroup.create': 'Create group',
  'newGroup.none': 'Select contacts in the table first.', 'newGroup.done': 'Group “{name}” created with {n} contacts.',
  'send.title': 'Send', 'send.kind': 'To', 'send.toContact': 'One contact', 'send.toGroup': 'A group',
  'send.toList': 'A list of numbers', 'send.contact': 'Contact id or phone number', 'send.group': 'Group',
  'send.list': 'Phone numbers, one a line', 'send.template': 'Template', 'send.noTemplate': 'None: write the text',
  'send.text': 'Message', 'send.submit': 'Send', 'send.preview': 'Preview', 'send.var': 'Value of {{name}}',
  'send.sample': 'For example, to: {name}', 'send.noSample': 'No contact yet to show the variables with.',
  'send.queued': 'Queued: message {id}.', 'send.jobQueued': 'Queued: {n} messages.',
  'send.error': 'Error', 'send.warning': 'Note',
  'job.status': '{sent} sent, {failed} failed, {queued} waiting, of {total}', 'job.done': 'Done: {sent} sent, {failed} failed, of {total}.',
  'messages.title': 'Message log', 'messages.empty': 'No messages.', 'msg.retry': 'Retry',
  'msg.queued': 'Queued', 'msg.sending': 'Sending', 'msg.sent': 'Sent', 'msg.failed': 'Failed',
  'webhooks.title': 'Webhook of user', 'webhooks.url': 'URL', 'webhooks.events': 'Events',
  'webhooks.secretOnce': 'The signing secret, shown only now: keep it.', 'webhooks.none': 'No webhook set yet.',
  'webhooks.saved': 'Saved.', 'webhooks.deleted': 'Deleted.',
  'deliveries.title': 'Deliveries', 'deliveries.empty': 'No deliveries yet.',
  'deliv.pending': 'Pending', 'deliv.delivered': 'Delivered', 'deliv.failed': 'Failed',
  'keys.title': 'API keys', 'keys.create': 'Create key', 'keys.once': 'The new key, shown only now: copy it.',
  'keys.revoke': 'Revoke', 'keys.empty': 'No tenant keys.', 'keys.needUser': 'Enter the user the key is for.',
  'nodes.title': 'Nodes', 'missing.title': 'Nothing here',
  'error.network': 'The server cannot be reached. Check the connection and try again.',
};

const ar = {
  'app.title': 'مدير واتساب',
  'nav.sessions': 'الجلسات', 'nav.link': 'ربط رقم', 'nav.keys': 'المفاتيح', 'nav.nodes': 'الخوادم',
  'lang.label': 'اللغة', signout: 'تسجيل الخروج',
  'signin.title': 'تسجيل الدخول', 'signin.help': 'أدخل مفتاح الواجهة البرمجية: مفتاح المدير أو مفتاح أحد العملاء. يُحفظ لهذا التبويب فقط.',
  'signin.key': 'مفتاح الواجهة البرمجية', 'signin.submit': 'دخول',
  'whoami.admin': 'المدير', 'whoami.user': 'المستخدم {id}', 'live.on': 'التحديث المباشر يعمل', 'live.off': 'التحديث المباشر متوقف، جارٍ إعادة الاتصال…',
  'sessions.title': 'الجلسات', 'sessions.empty': 'لا توجد جلسات مطابقة.', 'filter.status': 'الحالة', 'filter.user': 'المستخدم',
  'status.all': 'الكل', 'status.initializing': 'قيد البدء', 'status.qr_ready': 'بانتظار المسح',
  'status.authenticated': 'تم المسح، جارٍ الاتصال', 'status.ready': 'جاهز', 'status.fetching_contacts': 'جارٍ جلب جهات الاتصال',
  'status.disconnected': 'غير متصل', 'status.logged_out': 'تم تسجيل الخروج', 'status.error': 'خطأ',
  'status.not_initialized': 'لم تبدأ',
  'col.user': 'المستخدم', 'col.place': 'الفرع', 'col.status': 'الحالة', 'col.phone': 'الهاتف', 'col.name': 'الاسم',
  'col.contacts': 'جهات الاتصال', 'col.groups': 'المجموعات', 'col.activity': 'آخر نشاط', 'col.type': 'النوع',
  'col.description': 'الوصف', 'col.pushName': 'اسم واتساب', 'col.business': 'حساب تجاري', 'col.tags': 'الوسوم',
  'col.recipient': 'المستلم', 'col.text': 'النص', 'col.time': 'الوقت', 'col.event': 'الحدث', 'col.attempts': 'المحاولات',
  'col.result': 'آخر نتيجة', 'col.next': 'المحاولة التالية', 'col.prefix': 'البادئة', 'col.created': 'أُنشئ',
  'col.used': 'آخر استخدام', 'col.node': 'الخادم', 'col.address': 'العنوان', 'col.state': 'الحالة',
  'col.sessions': 'الجلسات', 'col.started': 'بدأ', 'col.heartbeat': 'آخر نبضة',
  prev: 'السابق', next: 'التالي', save: 'حفظ', cancel: 'إلغاء', confirm: 'نعم', delete: 'حذف',
  refresh: 'تحديث', any: 'الكل', yes: 'نعم', no: 'لا',
  'link.title': 'ربط رقم', 'link.start': 'اعرض رمز QR', 'link.countdown': 'رمز جديد بعد',
  'link.seconds': '{n} ث', 'link.open': 'افتح الجلسة', 'link.need': 'أدخل المستخدم والفرع (أرقام موجبة).',
  'link.help.none': 'أدخل المستخدم والفرع، ثم اضغط «اعرض رمز QR».',
  'link.help.initializing': 'جارٍ بدء الجلسة… سيظهر رمز QR بعد لحظات.',
  'link.help.qr_ready': 'افتح واتساب على الهاتف ← الإعدادات ← الأجهزة المرتبطة ← ربط جهاز، ثم وجّه الكاميرا إلى هذا الرمز.',
  'link.help.authenticated': 'تم المسح. جارٍ الاتصال بواتساب…',
  'link.help.ready': 'تم الربط. الرقم جاهز: افتح الجلسة لجلب جهات الاتصال.',
  'link.help.fetching_contacts': 'تم الربط، وجارٍ جلب جهات الاتصال.',
  'link.help.disconnected': 'انقطع الاتصال، وسيعيد الخادم الاتصال تلقائياً. إن استمر ذلك فأعد تشغيل الجلسة.',
  'link.help.logged_out': 'ألغى الهاتف ربط هذا الجهاز. اضغط «اعرض رمز QR» لربطه من جديد.',
  'link.help.error': 'تعذّر الربط. اضغط «اعرض رمز QR» للمحاولة مرة أخرى.',
  'pair.title': 'أو اربط برقم الهاتف', 'pair.phone': 'رقم الهاتف',
  'pair.help': 'على الهاتف: واتساب ← الأجهزة المرتبطة ← ربط جهاز ← الربط برقم الهاتف بدلاً من ذلك، ثم اكتب الرمز.',
  'pair.start': 'احصل على رمز الربط', 'pair.wait': 'جارٍ بدء الجلسة…',
  'session.title': 'الجلسة', 'session.info': 'التفاصيل', 'session.health': 'الحالة الصحية', 'session.recommendations': 'ما يجب فعله',
  'session.groups': 'المجموعات وجهات الاتصال', 'session.send': 'إرسال رسالة', 'session.webhooks': 'الويب هوك',
  'session.restart': 'إعادة التشغيل', 'session.logout': 'تسجيل الخروج', 'session.none': 'لا توجد مشكلات.',
  'confirm.restart': 'إعادة تشغيل هذه الجلسة؟ سيُغلق اتصالها ثم يُفتح من جديد.',
  'confirm.logout': 'تسجيل خروج هذا الرقم؟ سيُلغى ربطه بواتساب ويحتاج إلى مسح رمز QR جديد للعودة.',
  'confirm.revoke': 'إلغاء هذا المفتاح؟ ستُرفض الطلبات التي تستخدمه من الآن.',
  'confirm.deleteGroup': 'حذف المجموعة «{name}»؟ تبقى جهات الاتصال.',
  'confirm.deleteWebhook': 'حذف هذا الويب هوك؟ ستفشل التسليمات المعلّقة.',
  'info.session_id': 'معرّف الجلسة', 'info.phone': 'الهاتف', 'info.name': 'الاسم', 'info.contacts': 'جهات الاتصال',
  'info.groups': 'المجموعات', 'info.connected': 'متصل منذ', 'info.activity': 'آخر نشاط', 'info.created': 'أُنشئت',
  'info.sync': 'آخر جلب لجهات الاتصال', 'info.fetchError': 'خطأ آخر جلب', 'info.error': 'الخطأ',
  'fetch.title': 'جهات الاتصال', 'fetch.start': 'اجلب جهات الاتصال', 'fetch.running': 'جارٍ الجلب… {processed} من {total}',
  'summary.title': 'آخر جلب', 'summary.received': 'المستلَم', 'summary.imported': 'المستورَد',
  'summary.skipped_groups': 'مُستبعد: مجموعات', 'summary.skipped_broadcasts': 'مُستبعد: قوائم بث',
  'summary.skipped_newsletters': 'مُستبعد: قنوات', 'summary.skipped_self': 'مُستبعد: الحساب نفسه',
  'summary.skipped_unresolved_lids': 'مُستبعد: أرقام مخفية', 'summary.skipped_invalid': 'مُستبعد: أرقام غير صالحة',
  'summary.merged_duplicates': 'مكررات دُمجت',
  'groups.title': 'المجموعات', 'back.session': 'العودة إلى الجلسة', 'back.groups': 'العودة إلى المجموعات',
  'type.auto': 'تلقائية', 'type.manual': 'يدوية',
  'contacts.search': 'بحث', 'contacts.searchIn': 'في', 'search.all': 'الأسماء والأرقام', 'search.name': 'الأسماء',
  'search.phone': 'الأرقام', 'contacts.business': 'حساب تجاري', 'contacts.days': 'نشط خلال آخر (أيام)',
  'contacts.tags': 'الوسوم (جميعها)', 'contacts.total': 'جهات الاتصال:', 'contacts.csv': 'تنزيل CSV', 'contacts.empty': 'لا توجد جهات اتصال مطابقة.',
  'tags.title': 'وسوم', 'tags.help': 'الوسوم، تفصل بينها فواصل', 'tags.edit': 'الوسوم',
  'newGroup.title': 'مجموعة جديدة من جهات الاتصال المحددة', 'newGroup.selected': 'المحدد:', 'newGroup.create': 'أنشئ المجموعة',
  'newGroup.none': 'حدّد جهات اتصال في الجدول أولاً.', 'newGroup.done': 'أُنشئت المجموعة «{name}» وفيها {n} جهة اتصال.',
  'send.title': 'إرسال', 'send.kind': 'إلى', 'send.toContact': 'جهة اتصال واحدة', 'send.toGroup': 'مجموعة',
  'send.toList': 'قائمة أرقام', 'send.contact': 'معرّف جهة الاتصال أو رقم الهاتف', 'send.group': 'المجموعة',
  'send.list': 'أرقام الهواتف، رقم في كل سطر', 'send.template': 'القالب', 'send.noTemplate': 'بدون قالب: اكتب النص',
  'send.text': 'الرسالة', 'send.submit': 'إرسال', 'send.preview': 'معاينة', 'send.var': 'قيمة {{name}}',
  'send.sample': 'مثلاً، إلى: {name}', 'send.noSample': 'لا توجد جهة اتصال بعد لعرض المتغيرات بها.',
  'send.queued': 'في قائمة الانتظار: الرسالة {id}.', 'send.jobQueued': 'في قائمة الانتظار: {n} رسالة.',
  'send.error': 'خطأ', 'send.warning': 'تنبيه',
  'job.status': 'أُرسلت {sent}، وفشلت {failed}، وتنتظر {queued}، من {total}', 'job.done': 'انتهى: أُرسلت {sent}، وفشلت {failed}، من {total}.',
  'messages.title': 'سجل الرسائل', 'messages.empty': 'لا توجد رسائل.', 'msg.retry': 'أعد المحاولة',
  'msg.queued': 'في الانتظار', 'msg.sending': 'قيد الإرسال', 'msg.sent': 'أُرسلت', 'msg.failed': 'فشلت',
  'webhooks.title': 'الويب هوك للمستخدم', 'webhooks.url': 'الرابط', 'webhooks.events': 'الأحداث',
  'webhooks.secretOnce': 'سرّ التوقيع، يظهر الآن فقط: احفظه.', 'webhooks.none': 'لم يُضبط ويب هوك بعد.',
  'webhooks.saved': 'تم الحفظ.', 'webhooks.deleted': 'تم الحذف.',
  'deliveries.title': 'التسليمات', 'deliveries.empty': 'لا توجد تسليمات بعد.',
  'deliv.pending': 'معلّق', 'deliv.delivered': 'سُلّم', 'deliv.failed': 'فشل',
  'keys.title': 'مفاتيح الواجهة البرمجية', 'keys.create': 'أنشئ مفتاحاً', 'keys.once': 'المفتاح الجديد، يظهر الآن فقط: انسخه.',
  'keys.revoke': 'إلغاء', 'keys.empty': 'لا توجد مفاتيح عملاء.', 'keys.needUser': 'أدخل المستخدم الذي يُنشأ له المفتاح.',
  'nodes.title': 'الخوادم', 'missing.title': 'لا شيء هنا',
  'error.network': 'تعذّر الوصول إلى الخادم. تحقّق من الاتصال وحاول مرة أخرى.',
};

const tables = { ar, en };
const STORE = 'wam.lang';
let current = 'en';

export function lang() {
  return current;
}

/** Remembered choice, else the browser's first language: Arabic when it starts with `ar`. */
export function initialLang() {
  const saved = localStorage.getItem(STORE);
  if (saved && tables[saved]) return saved;
  const first = (navigator.languages && navigator.languages[0]) || navigator.language || '';
  return first.toLowerCase().startsWith('ar') ? 'ar' : 'en';
}

/** `t('job.status', {sent: 1})`; a missing key shows itself, so a gap is seen, not hidden. */
export function t(key, vars = {}) {
  const text = tables[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Switches the page: direction, `lang`, and every `data-i18n` element. */
export function setLang(code, remember = false) {
  current = tables[code] ? code : 'en';
  if (remember) localStorage.setItem(STORE, current);
  const root = document.documentElement;
  root.lang = current;
  root.dir = current === 'ar' ? 'rtl' : 'ltr';
  document.title = t('app.title');
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
}
