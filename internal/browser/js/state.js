// Session storage of one origin: export and import of localStorage,
// sessionStorage and IndexedDB. IndexedDB keys and values use a tagged JSON
// encoding of structured-clone values ({"$t": "Date", "v": …}), so that Date,
// Map, Set, ArrayBuffer, typed arrays, RegExp, BigInt, Blob, undefined and
// nested values survive a round trip. Evaluates to {export(), import(data)}.
(() => {
  const typed = ['Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
    'Int32Array', 'Uint32Array', 'Float16Array', 'Float32Array', 'Float64Array',
    'BigInt64Array', 'BigUint64Array'];
  const b64 = (u8) => {
    let s = '';
    for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const unb64 = (s) => {
    const bin = atob(s);
    const u8 = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
    return u8;
  };
  const put = (o, k, v) => Object.defineProperty(o, k, {value: v, enumerable: true, writable: true, configurable: true});

  // blobs collects Blob values met while encoding; their bytes are read
  // afterwards, outside any IndexedDB transaction.
  const encode = (v, path, blobs) => {
    switch (typeof v) {
    case 'undefined': return {$t: 'undefined'};
    case 'boolean': case 'string': return v;
    case 'number':
      if (Object.is(v, -0)) return {$t: 'Number', v: '-0'};
      return Number.isFinite(v) ? v : {$t: 'Number', v: String(v)};
    case 'bigint': return {$t: 'BigInt', v: v.toString()};
    case 'symbol': case 'function': return {$t: 'undefined'};
    }
    if (v === null) return null;
    if (path.includes(v)) return null; // a cycle: JSON cannot hold it
    path.push(v);
    try {
      if (Array.isArray(v)) return v.map((x) => encode(x, path, blobs));
      if (v instanceof Date) { const t = v.getTime(); return {$t: 'Date', v: Number.isNaN(t) ? null : t}; }
      if (v instanceof RegExp) return {$t: 'RegExp', source: v.source, flags: v.flags};
      if (v instanceof Map) return {$t: 'Map', v: [...v].map(([k, x]) => [encode(k, path, blobs), encode(x, path, blobs)])};
      if (v instanceof Set) return {$t: 'Set', v: [...v].map((x) => encode(x, path, blobs))};
      if (v instanceof ArrayBuffer) return {$t: 'ArrayBuffer', v: b64(new Uint8Array(v))};
      if (ArrayBuffer.isView(v)) {
        const bytes = b64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
        return {$t: v instanceof DataView ? 'DataView' : v.constructor.name, v: bytes};
      }
      if (typeof Blob !== 'undefined' && v instanceof Blob) {
        const out = (typeof File !== 'undefined' && v instanceof File)
          ? {$t: 'File', name: v.name, type: v.type, lastModified: v.lastModified, v: ''}
          : {$t: 'Blob', type: v.type, v: ''};
        blobs.push([v, out]);
        return out;
      }
      if (v instanceof Error) return {$t: 'Error', name: v.name, message: v.message};
      if (v instanceof Boolean || v instanceof Number || v instanceof String) return {$t: 'Boxed', v: encode(v.valueOf(), path, blobs)};
      const o = {};
      for (const k of Object.keys(v)) put(o, k, encode(v[k], path, blobs));
      return Object.prototype.hasOwnProperty.call(o, '$t') ? {$t: 'Object', v: o} : o;
    } finally {
      path.pop();
    }
  };

  const decode = (v) => {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map(decode);
    if (typeof v.$t === 'string') {
      switch (v.$t) {
      case 'undefined': return undefined;
      case 'Number': return v.v === '-0' ? -0 : Number(v.v);
      case 'BigInt': return BigInt(v.v);
      case 'Date': return new Date(v.v === null ? NaN : v.v);
      case 'RegExp': return new RegExp(v.source, v.flags);
      case 'Map': return new Map(v.v.map(([k, x]) => [decode(k), decode(x)]));
      case 'Set': return new Set(v.v.map(decode));
      case 'ArrayBuffer': return unb64(v.v).buffer;
      case 'DataView': return new DataView(unb64(v.v).buffer);
      case 'Blob': return new Blob([unb64(v.v)], {type: v.type});
      case 'File': return new File([unb64(v.v)], v.name, {type: v.type, lastModified: v.lastModified});
      case 'Error': { const e = new Error(v.message); e.name = v.name; return e; }
      case 'Boxed': return Object(decode(v.v));
      case 'Object': { const o = {}; for (const k of Object.keys(v.v)) put(o, k, decode(v.v[k])); return o; }
      default:
        if (typed.includes(v.$t) && typeof globalThis[v.$t] === 'function') return new globalThis[v.$t](unb64(v.v).buffer);
      }
    }
    const o = {};
    for (const k of Object.keys(v)) put(o, k, decode(v[k]));
    return o;
  };

  const req = (r) => new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  const done = (tx) => new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
  });
  const entries = (s) => {
    const out = [];
    for (let i = 0; i < s.length; i++) { const k = s.key(i); out.push({name: k, value: s.getItem(k)}); }
    return out;
  };

  const exportDB = async (name) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(name);
      // The database vanished since databases() listed it: do not create it.
      r.onupgradeneeded = () => r.transaction.abort();
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    }).catch(() => null);
    if (!db) return null;
    const names = [...db.objectStoreNames];
    const stores = [];
    if (names.length) {
      const tx = db.transaction(names, 'readonly');
      const raw = names.map((n) => {
        const st = tx.objectStore(n);
        const s = {name: n, keyPath: st.keyPath, autoIncrement: st.autoIncrement, indexes: [], records: []};
        for (const i of st.indexNames) {
          const ix = st.index(i);
          s.indexes.push({name: ix.name, keyPath: ix.keyPath, unique: ix.unique, multiEntry: ix.multiEntry});
        }
        return [s, req(st.getAllKeys()), req(st.getAll())];
      });
      for (const [s, keys, values] of raw) stores.push([s, await keys, await values]);
      await done(tx);
    }
    const version = db.version;
    db.close();
    const blobs = [];
    const out = {name, version, stores: stores.map(([s, keys, values]) => {
      s.records = values.map((v, i) => ({key: encode(keys[i], [], blobs), value: encode(v, [], blobs)}));
      return s;
    })};
    for (const [blob, o] of blobs) o.v = b64(new Uint8Array(await blob.arrayBuffer()));
    return out;
  };

  const importDB = async (d) => {
    const stores = d.stores || [];
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(d.name, Math.max(1, d.version || 1));
      r.onupgradeneeded = () => {
        const conn = r.result;
        for (const s of stores) {
          if (conn.objectStoreNames.contains(s.name)) conn.deleteObjectStore(s.name);
          const o = {autoIncrement: !!s.autoIncrement};
          if (s.keyPath !== null && s.keyPath !== undefined) o.keyPath = s.keyPath;
          const st = conn.createObjectStore(s.name, o);
          for (const ix of s.indexes || []) st.createIndex(ix.name, ix.keyPath, {unique: !!ix.unique, multiEntry: !!ix.multiEntry});
        }
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
      r.onblocked = () => reject(new Error('indexedDB ' + d.name + ' is blocked'));
    });
    try {
      if (!stores.length) return;
      const tx = db.transaction(stores.map((s) => s.name), 'readwrite');
      for (const s of stores) {
        const st = tx.objectStore(s.name);
        for (const rec of s.records || []) {
          const v = decode(rec.value);
          if (st.keyPath !== null || rec.key === undefined) st.put(v); else st.put(v, decode(rec.key));
        }
      }
      await done(tx);
    } finally {
      db.close();
    }
  };

  return {
    async export() {
      let local = [], session = [];
      try { local = entries(localStorage); } catch (e) {}
      try { session = entries(sessionStorage); } catch (e) {}
      const dbs = [];
      if (typeof indexedDB !== 'undefined' && indexedDB.databases) {
        for (const info of await indexedDB.databases()) {
          const d = await exportDB(info.name);
          if (d) dbs.push(d);
        }
      }
      return {origin: location.origin, localStorage: local, sessionStorage: session, indexedDB: dbs};
    },
    async import(data) {
      for (const e of data.localStorage || []) localStorage.setItem(e.name, e.value);
      for (const e of data.sessionStorage || []) sessionStorage.setItem(e.name, e.value);
      for (const d of data.indexedDB || []) await importDB(d);
      return true;
    },
  };
})()
