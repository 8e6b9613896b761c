// Waits until the first element matching sel is in state ("attached",
// "visible", "hidden" or "detached"). opts: {enabled, point, scroll, timeout}.
// enabled: also wait until the element is not disabled. point: scroll it into
// view and wait until its centre receives pointer events; the result then has
// the centre x, y in CSS pixels. Resolves {ok:true,…} or, after timeout ms,
// {ok:false, reason}. An invalid selector rejects.
(sel, state, opts) => new Promise((resolve, reject) => {
  const visible = (el) => {
    if (!el.isConnected) return false;
    if (typeof el.checkVisibility === 'function' &&
        !el.checkVisibility({visibilityProperty: true})) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const disabled = (el) => el.matches(':disabled') || el.getAttribute('aria-disabled') === 'true';
  const describe = (el) => {
    if (!el) return 'nothing';
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (typeof el.className === 'string' && el.className.trim()) s += '.' + el.className.trim().split(/\s+/).join('.');
    return s;
  };
  const inView = (r) => r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth;
  const hits = (el, hit) => {
    for (let n = hit; n; n = n.parentNode || n.host) if (n === el) return true;
    return false;
  };
  let reason = 'not found';
  const check = () => {
    const el = document.querySelector(sel);
    switch (state) {
    case 'attached':
      return el ? {ok: true} : null;
    case 'detached':
      if (!el) return {ok: true};
      reason = 'still attached';
      return null;
    case 'hidden':
      if (!el || !visible(el)) return {ok: true};
      reason = 'still visible';
      return null;
    }
    if (!el) { reason = 'not found'; return null; }
    if (!visible(el)) { reason = 'not visible'; return null; }
    if (opts.enabled && disabled(el)) { reason = 'disabled'; return null; }
    if (!opts.point) {
      if (opts.scroll) el.scrollIntoView({block: 'center', inline: 'center', behavior: 'instant'});
      return {ok: true};
    }
    let r = el.getBoundingClientRect();
    if (!inView(r)) {
      el.scrollIntoView({block: 'center', inline: 'center', behavior: 'instant'});
      r = el.getBoundingClientRect();
    }
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    const hit = document.elementFromPoint(x, y);
    if (!hits(el, hit)) { reason = 'covered by ' + describe(hit); return null; }
    return {ok: true, x, y};
  };
  let observer, interval, timer, settled = false;
  const finish = (value, err) => {
    if (settled) return;
    settled = true;
    if (observer) observer.disconnect();
    clearInterval(interval);
    clearTimeout(timer);
    if (err) reject(err); else resolve(value);
  };
  const tick = () => {
    try {
      const r = check();
      if (r) finish(r);
    } catch (e) {
      finish(null, e);
    }
  };
  tick();
  if (settled) return;
  observer = new MutationObserver(tick);
  observer.observe(document, {subtree: true, childList: true, attributes: true});
  // Style and layout changes that no mutation shows (stylesheets, animations).
  interval = setInterval(tick, 100);
  timer = setTimeout(() => finish({ok: false, reason}), opts.timeout);
})
