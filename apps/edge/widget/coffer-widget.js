// The Coffer connect widget: renders a connector's JSON Schema as a form, validates it, and creates or
// updates the source through the edge that served this script. No framework, no storage: nothing is
// written to localStorage, sessionStorage or cookies, and the secret goes only to the edge.
(function () {
  'use strict';

  var MASK = '**********';
  var script = document.currentScript;
  var EDGE = script && script.src ? new URL(script.src).origin : window.location.origin;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) return;
      if (k === 'text') node.textContent = v;
      else if (k === 'className') node.className = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    });
    (children || []).forEach(function (c) {
      if (c) node.appendChild(c);
    });
    return node;
  }

  function typeOf(schema) {
    var t = schema.type;
    if (Array.isArray(t)) t = t.filter(function (x) { return x !== 'null'; })[0];
    if (t) return t;
    if (schema.properties || schema.oneOf) return 'object';
    if (schema.items) return 'array';
    return 'string';
  }

  function childPath(path, key) {
    return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? path + '.' + key : path + '[' + JSON.stringify(key) + ']';
  }

  function orderedKeys(props) {
    return Object.keys(props).sort(function (a, b) {
      var oa = typeof props[a].order === 'number' ? props[a].order : 1e9;
      var ob = typeof props[b].order === 'number' ? props[b].order : 1e9;
      return oa - ob;
    });
  }

  // Every control registers here by its JSON path ($.a.b[0]), so an error from the edge finds its field.
  function Registry() {
    this.byPath = {};
  }
  Registry.prototype.add = function (path, ctl) {
    this.byPath[path] = ctl;
  };

  function fieldShell(label, schema, required, control, registry, path) {
    var error = el('div', { className: 'coffer-error', role: 'alert' });
    var id = 'coffer-f-' + Math.random().toString(36).slice(2);
    control.id = id;
    var wrap = el('div', { className: 'coffer-field', 'data-path': path }, [
      el('label', { for: id, text: label + (required ? ' *' : '') }),
      control,
      schema.description ? el('div', { className: 'coffer-help', text: String(schema.description).slice(0, 300) }) : null,
      error,
    ]);
    var ctl = {
      el: wrap,
      input: control,
      setError: function (msg) {
        error.textContent = msg || '';
        wrap.classList.toggle('coffer-invalid', Boolean(msg));
        if (msg) control.setAttribute('aria-invalid', 'true');
        else control.removeAttribute('aria-invalid');
      },
    };
    registry.add(path, ctl);
    return ctl;
  }

  function labelOf(schema, key) {
    return schema.title || key || 'value';
  }

  // Builds the control for one schema; returns { el, read(), validate(errors), clear() }.
  function build(schema, path, key, required, value, registry) {
    schema = schema || {};
    if (Array.isArray(schema.oneOf) && schema.oneOf.length > 0) return buildOneOf(schema, path, key, required, value, registry);
    var type = typeOf(schema);
    if (schema.const !== undefined) return { el: null, read: function () { return schema.const; }, validate: function () {} };
    if (type === 'object') return buildObject(schema, path, key, required, value, registry);
    if (type === 'array') return buildArray(schema, path, key, required, value, registry);
    if (Array.isArray(schema.enum)) return buildEnum(schema, path, key, required, value, registry);
    if (type === 'boolean') return buildBoolean(schema, path, key, value, registry);
    return buildScalar(schema, type, path, key, required, value, registry);
  }

  function buildObject(schema, path, key, required, value, registry) {
    var props = schema.properties || {};
    var req = schema.required || [];
    var current = value && typeof value === 'object' ? value : {};
    var children = orderedKeys(props).map(function (k) {
      return { key: k, ctl: build(props[k], childPath(path, k), k, req.indexOf(k) >= 0, current[k], registry) };
    });
    var body = children.map(function (c) { return c.ctl.el; });
    var node = key === null ? el('div', { className: 'coffer-object' }, body) : el('fieldset', { className: 'coffer-object', 'data-path': path }, [el('legend', { text: labelOf(schema, key) + (required ? ' *' : '') })].concat(body));
    return {
      el: node,
      read: function () {
        var out = {};
        children.forEach(function (c) {
          var v = c.ctl.read();
          if (v !== undefined) out[c.key] = v;
        });
        return out;
      },
      validate: function (errors) {
        children.forEach(function (c) { c.ctl.validate(errors); });
      },
    };
  }

  function branchTitle(branch, i) {
    if (branch.title) return branch.title;
    var props = branch.properties || {};
    for (var k in props) if (props[k].const !== undefined) return String(props[k].const);
    return 'Option ' + (i + 1);
  }

  function branchMatches(branch, value) {
    if (!value || typeof value !== 'object') return false;
    var props = branch.properties || {};
    var consts = Object.keys(props).filter(function (k) { return props[k].const !== undefined || (Array.isArray(props[k].enum) && props[k].enum.length === 1); });
    if (consts.length === 0) return false;
    return consts.every(function (k) {
      var c = props[k].const !== undefined ? props[k].const : props[k].enum[0];
      return value[k] === c;
    });
  }

  function buildOneOf(schema, path, key, required, value, registry) {
    var branches = schema.oneOf;
    var chosen = 0;
    branches.forEach(function (b, i) { if (branchMatches(b, value)) chosen = i; });
    var select = el('select', { 'data-oneof': path }, branches.map(function (b, i) {
      return el('option', { value: String(i), text: branchTitle(b, i), selected: i === chosen });
    }));
    var holder = el('div', { className: 'coffer-branch' });
    var current;
    function render(i, v) {
      // Controls of the branch left behind are dropped from the registry with it.
      Object.keys(registry.byPath).forEach(function (p) {
        if (p.indexOf(path + '.') === 0 || p.indexOf(path + '[') === 0) delete registry.byPath[p];
      });
      var merged = Object.assign({}, branches[i], { title: undefined, properties: Object.assign({}, schema.properties || {}, branches[i].properties || {}), required: (schema.required || []).concat(branches[i].required || []) });
      current = buildObject(merged, path, null, true, v, registry);
      holder.textContent = '';
      holder.appendChild(current.el);
    }
    render(chosen, value);
    select.addEventListener('change', function () { render(Number(select.value), undefined); });
    var shell = fieldShell(labelOf(schema, key), schema, required, select, registry, path + '#choice');
    var node = el('fieldset', { className: 'coffer-oneof', 'data-path': path }, [el('legend', { text: labelOf(schema, key) + (required ? ' *' : '') }), shell.el, holder]);
    shell.el.querySelector('label').textContent = 'Choose one';
    return { el: node, read: function () { return current.read(); }, validate: function (errors) { current.validate(errors); } };
  }

  function buildArray(schema, path, key, required, value, registry) {
    var items = schema.items && !Array.isArray(schema.items) ? schema.items : { type: 'string' };
    var list = el('div', { className: 'coffer-array-items' });
    var rows = [];
    var error = el('div', { className: 'coffer-error', role: 'alert' });
    var addButton = el('button', { type: 'button', className: 'coffer-add', text: 'Add' });
    var node = el('fieldset', { className: 'coffer-array', 'data-path': path }, [el('legend', { text: labelOf(schema, key) + (required ? ' *' : '') }), list, addButton, error]);
    function renumber() {
      rows.forEach(function (r, i) { r.index = i; });
    }
    function addRow(v) {
      var row = { index: rows.length };
      var ctl = build(items, path + '[' + row.index + ']', (items.title || 'item') + ' ' + (row.index + 1), true, v, registry);
      var remove = el('button', { type: 'button', className: 'coffer-remove', text: 'Remove' });
      row.ctl = ctl;
      row.el = el('div', { className: 'coffer-array-item' }, [ctl.el, remove]);
      remove.addEventListener('click', function () {
        rows.splice(rows.indexOf(row), 1);
        list.removeChild(row.el);
        renumber();
      });
      rows.push(row);
      list.appendChild(row.el);
    }
    (Array.isArray(value) ? value : []).forEach(addRow);
    if (rows.length === 0 && (schema.minItems || 0) > 0) addRow(undefined);
    addButton.addEventListener('click', function () { addRow(undefined); });
    registry.add(path, { el: node, setError: function (m) { error.textContent = m || ''; node.classList.toggle('coffer-invalid', Boolean(m)); } });
    return {
      el: node,
      read: function () {
        var out = rows.map(function (r) { return r.ctl.read(); }).filter(function (v) { return v !== undefined; });
        return out.length === 0 && !required ? undefined : out;
      },
      validate: function (errors) {
        var n = this.read() ? this.read().length : 0;
        if (schema.minItems && n < schema.minItems) errors.push({ path: path, message: 'needs at least ' + schema.minItems + ' item' + (schema.minItems > 1 ? 's' : '') });
        if (schema.maxItems && n > schema.maxItems) errors.push({ path: path, message: 'takes at most ' + schema.maxItems + ' items' });
        rows.forEach(function (r) { r.ctl.validate(errors); });
      },
    };
  }

  function buildEnum(schema, path, key, required, value, registry) {
    var initial = value !== undefined ? value : schema.default;
    var options = (required ? [] : [el('option', { value: '', text: '—' })]).concat(
      schema.enum.map(function (v, i) { return el('option', { value: String(i), text: String(v), selected: v === initial }); }),
    );
    var select = el('select', { name: path }, options);
    var shell = fieldShell(labelOf(schema, key), schema, required, select, registry, path);
    return {
      el: shell.el,
      read: function () { return select.value === '' ? undefined : schema.enum[Number(select.value)]; },
      validate: function (errors) {
        if (required && select.value === '') errors.push({ path: path, message: 'is required' });
      },
    };
  }

  function buildBoolean(schema, path, key, value, registry) {
    var initial = value !== undefined ? value : schema.default;
    var box = el('input', { type: 'checkbox', name: path, checked: initial === true });
    var shell = fieldShell(labelOf(schema, key), schema, false, box, registry, path);
    return { el: shell.el, read: function () { return box.checked; }, validate: function () {} };
  }

  function buildScalar(schema, type, path, key, required, value, registry) {
    var secret = schema.airbyte_secret === true;
    // A stored secret comes back masked: the field stays empty and sending nothing keeps what is stored.
    var stored = secret && value === MASK;
    var initial = secret ? '' : value !== undefined ? value : schema.default;
    var attrs = { name: path, autocomplete: secret ? 'off' : undefined, spellcheck: 'false' };
    var input;
    if (!secret && schema.multiline) input = el('textarea', attrs);
    else input = el('input', Object.assign(attrs, { type: secret ? 'password' : type === 'integer' || type === 'number' ? 'number' : 'text', step: type === 'integer' ? '1' : type === 'number' ? 'any' : undefined }));
    if (initial !== undefined && initial !== null && typeof initial !== 'object') input.value = String(initial);
    if (stored) input.placeholder = 'stored; leave empty to keep it';
    else if (Array.isArray(schema.examples) && typeof schema.examples[0] !== 'object' && !secret) input.placeholder = String(schema.examples[0]);
    var shell = fieldShell(labelOf(schema, key), schema, required, input, registry, path);
    return {
      el: shell.el,
      read: function () {
        var raw = input.value;
        if (raw === '') return stored ? MASK : undefined;
        if (type === 'integer' || type === 'number') return Number(raw);
        return raw;
      },
      validate: function (errors) {
        var raw = input.value;
        if (raw === '') {
          if (required && !stored) errors.push({ path: path, message: 'is required' });
          return;
        }
        if (type === 'integer' || type === 'number') {
          var n = Number(raw);
          if (!isFinite(n) || (type === 'integer' && !Number.isInteger(n))) return errors.push({ path: path, message: 'must be ' + (type === 'integer' ? 'a whole number' : 'a number') });
          if (typeof schema.minimum === 'number' && n < schema.minimum) errors.push({ path: path, message: 'must be at least ' + schema.minimum });
          if (typeof schema.maximum === 'number' && n > schema.maximum) errors.push({ path: path, message: 'must be at most ' + schema.maximum });
          return;
        }
        if (typeof schema.minLength === 'number' && raw.length < schema.minLength) errors.push({ path: path, message: 'must be at least ' + schema.minLength + ' characters' });
        if (typeof schema.maxLength === 'number' && raw.length > schema.maxLength) errors.push({ path: path, message: 'must be at most ' + schema.maxLength + ' characters' });
        if (typeof schema.pattern === 'string') {
          var re = null;
          try {
            re = new RegExp(schema.pattern, 'u');
          } catch {
            // A pattern JavaScript cannot compile is left to the server's check.
          }
          if (re && !re.test(raw)) errors.push({ path: path, message: schema.pattern_descriptor ? 'must look like ' + schema.pattern_descriptor : 'does not have the expected format' });
        }
      },
    };
  }

  function flatten(value, path, out) {
    if (Array.isArray(value)) value.forEach(function (v, i) { flatten(v, path + '[' + i + ']', out); });
    else if (value && typeof value === 'object') Object.keys(value).forEach(function (k) { flatten(value[k], childPath(path, k), out); });
    else out.push([path.replace(/^\$\.?/, ''), value === null ? 'null' : String(value)]);
    return out;
  }

  function CofferError(code, message, details) {
    this.code = code;
    this.message = message;
    this.details = details || [];
  }

  function detailsOf(res) {
    try {
      return JSON.parse(res.headers.get('coffer-error-details') || '[]');
    } catch {
      return [];
    }
  }

  function request(token, path, body) {
    return fetch(EDGE + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = {};
        try {
          json = text ? JSON.parse(text) : {};
        } catch {
          json = {};
        }
        if (!res.ok) throw new CofferError(json.code || 'unavailable', json.message || 'the request failed (HTTP ' + res.status + ')', json.details || detailsOf(res));
        return json;
      });
    });
  }

  function config(token, method, body) {
    return request(token, '/coffer.config.v1.ConfigService/' + method, body);
  }

  function ensureStyles() {
    if (document.querySelector('link[data-coffer-widget]')) return;
    document.head.appendChild(el('link', { rel: 'stylesheet', href: EDGE + '/widget/coffer-widget.css', 'data-coffer-widget': true }));
  }

  /**
   * Mounts the widget in `target`: options.token (a widget token), options.definitionId, and
   * options.actorId to edit an existing source. Emits `coffer:saved` on `target` with { actorId, version }.
   */
  function mount(target, options) {
    if (!target || !options || !options.token || !options.definitionId) throw new Error('CofferWidget.mount(element, { token, definitionId, actorId? })');
    ensureStyles();
    var token = options.token;
    var state = { actorId: options.actorId || '', version: 0, spec: null, definition: null };
    var root = el('div', { className: 'coffer-widget' });
    var status = el('div', { className: 'coffer-status', role: 'status' });
    target.textContent = '';
    target.appendChild(root);
    root.appendChild(status);
    status.textContent = 'Loading…';

    function showSummary(actor) {
      var old = root.querySelector('.coffer-summary');
      if (old) root.removeChild(old);
      var rows = flatten(JSON.parse(actor.configJson || '{}'), '$', []);
      var table = el('dl', { className: 'coffer-summary' }, []);
      rows.forEach(function (r) {
        table.appendChild(el('dt', { text: r[0] }));
        table.appendChild(el('dd', { text: r[1], 'data-path': '$.' + r[0] }));
      });
      root.appendChild(table);
    }

    function render(actor) {
      var old = root.querySelector('form');
      if (old) root.removeChild(old);
      var registry = new Registry();
      var stored = actor ? JSON.parse(actor.configJson || '{}') : undefined;
      var name = el('input', { type: 'text', name: 'name', value: actor ? actor.name : state.definition.name });
      var formError = el('div', { className: 'coffer-error coffer-form-error', role: 'alert' });
      var body = build(state.spec, '$', null, true, stored, registry);
      var submit = el('button', { type: 'submit', className: 'coffer-submit', text: actor ? 'Save changes' : 'Connect' });
      var form = el('form', { className: 'coffer-form', novalidate: true }, [
        el('div', { className: 'coffer-field' }, [el('label', { text: 'Name *' }), name]),
        body.el,
        formError,
        submit,
      ]);
      form.addEventListener('submit', function (event) {
        event.preventDefault();
        Object.keys(registry.byPath).forEach(function (p) { registry.byPath[p].setError(''); });
        formError.textContent = '';
        var errors = [];
        body.validate(errors);
        if (!name.value) errors.push({ path: 'name', message: 'is required' });
        if (errors.length > 0) {
          errors.forEach(function (e) {
            var ctl = registry.byPath[e.path];
            if (ctl) ctl.setError(e.message);
            else formError.textContent = e.path + ' ' + e.message;
          });
          var first = registry.byPath[errors[0].path];
          if (first && first.input) first.input.focus();
          status.textContent = 'Please correct the marked fields.';
          return;
        }
        var configuration = body.read();
        submit.disabled = true;
        status.textContent = 'Saving…';
        var call = state.actorId
          ? config(token, 'UpdateActor', { actorId: state.actorId, expectedVersion: String(state.version), name: name.value, configJson: JSON.stringify(configuration) }).then(function (r) { return r.actor; })
          : request(token, '/api/v1/integrations/connectors', { definition_id: state.definition.definitionId, name: name.value, configuration: configuration }).then(function (r) {
              return { actorId: r.id, name: r.name, version: r.version, configJson: JSON.stringify(r.configuration) };
            });
        configuration = null;
        call.then(
          function (saved) {
            state.actorId = saved.actorId;
            state.version = Number(saved.version);
            status.textContent = 'Saved.';
            // The form is drawn again from what the edge answered: masked, so no typed secret stays in the page.
            render(saved);
            showSummary(saved);
            target.dispatchEvent(new CustomEvent('coffer:saved', { detail: { actorId: saved.actorId, version: state.version } }));
          },
          function (err) {
            submit.disabled = false;
            status.textContent = 'Not saved.';
            var placed = false;
            (err.details || []).forEach(function (d) {
              var field = String(d.field || '');
              var path = field.indexOf(':') >= 0 ? field.slice(field.indexOf(':') + 1) : field;
              var ctl = registry.byPath[path];
              if (ctl) {
                ctl.setError(d.reason);
                placed = true;
              }
            });
            formError.textContent = placed ? 'Please correct the marked fields.' : err.message;
          },
        );
      });
      root.insertBefore(form, status);
    }

    config(token, 'GetConnectorDefinition', { definitionId: options.definitionId })
      .then(function (r) {
        state.definition = r.definition;
        state.spec = JSON.parse(r.definition.specJson);
        if (!state.actorId) return null;
        return config(token, 'GetActor', { actorId: state.actorId }).then(function (a) { return a.actor; });
      })
      .then(
        function (actor) {
          if (actor) state.version = Number(actor.version);
          status.textContent = '';
          render(actor);
          if (actor) showSummary(actor);
        },
        function (err) {
          status.textContent = 'Could not load the connector: ' + err.message;
        },
      );
  }

  window.CofferWidget = { mount: mount };

  // The edge's own page (/widget/#token=…&definition=…[&actor=…]): the fragment never reaches a server,
  // and it is cleared as soon as it is read.
  var standalone = document.querySelector('[data-coffer-standalone]');
  if (standalone) {
    var params = new URLSearchParams(window.location.hash.slice(1));
    history.replaceState(null, '', window.location.pathname + window.location.search);
    if (params.get('token') && params.get('definition')) mount(standalone, { token: params.get('token'), definitionId: params.get('definition'), actorId: params.get('actor') || undefined });
    else standalone.textContent = 'Open this page as /widget/#token=<widget token>&definition=<definition id>.';
  }
})();
