// The live board: subscribes to /topic/demo.# over STOMP-over-WebSocket and lists what arrives.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  let client = null;

  function setStatus(text, connected) {
    $('status').textContent = text;
    $('status').className = connected ? 'connected' : 'disconnected';
  }

  // Where a message came from, by the headers each protocol adapter leaves on it.
  function origin(headers) {
    if (headers['x-mqtt-client-id'] !== undefined || headers['x-mqtt-publish-qos'] !== undefined) return 'MQTT';
    if (headers['app-id'] !== undefined) return 'AMQP (' + headers['app-id'] + ')';
    if (headers['x-sent-by'] === 'junction-demo') return 'STOMP (this page)';
    return 'AMQP / STOMP';
  }

  function show(message) {
    const row = document.createElement('tr');
    const cells = [new Date().toLocaleTimeString(), message.headers.destination, origin(message.headers), message.body];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 3) td.className = 'body';
      row.appendChild(td);
    });
    $('board').prepend(row);
  }

  function connect(user, password) {
    if (client) client.deactivate();
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    client = new StompJs.Client({
      brokerURL: scheme + location.host + '/ws',
      connectHeaders: { login: user, passcode: password, host: location.hostname },
      reconnectDelay: 2000,
    });
    client.onConnect = () => {
      setStatus('connected', true);
      client.subscribe('/topic/demo.#', show);
    };
    client.onStompError = (frame) => setStatus('error: ' + frame.headers.message, false);
    client.onWebSocketClose = () => setStatus('disconnected', false);
    client.activate();
  }

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    connect($('user').value, $('password').value);
  });
  $('send').addEventListener('submit', (e) => {
    e.preventDefault();
    if (!client || !client.connected) return;
    client.publish({ destination: $('destination').value, body: $('text').value, headers: { 'x-sent-by': 'junction-demo' } });
    $('text').value = '';
  });
  connect('guest', 'guest');
})();
