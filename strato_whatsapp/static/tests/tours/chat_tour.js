import { registry } from "@web/core/registry";

/**
 * An agent opens a lead, reads what the contact wrote on WhatsApp, answers with Enter, and watches
 * the answer go from the clock (queued) to two grey ticks (delivered) without reloading the page.
 * The test around it plays Meta (the Graph API simulator) and the cron workers.
 */
registry.category("web_tour.tours").add("strato_whatsapp_chat_tour", {
    steps: () => [
        {
            content: "The chat is the lead's first page and shows what the contact wrote",
            trigger: ".o_sw_chat .o_sw_message.o_sw_inbound:contains('¿Puedo visitar el piso mañana?')",
        },
        {
            content: "Received messages are grouped under a day separator",
            trigger: ".o_sw_chat .o_sw_day",
        },
        {
            content: "The reply window is open: write an answer",
            trigger: ".o_sw_composer textarea.o_sw_input",
            run: "edit Claro, ¿le viene bien a las 11:00?",
        },
        {
            content: "Enter sends it",
            trigger: ".o_sw_composer textarea.o_sw_input",
            run: "press Enter",
        },
        {
            content: "The answer shows at once, on the right",
            trigger: ".o_sw_chat .o_sw_message.o_sw_outbound:contains('Claro, ¿le viene bien a las 11:00?')",
        },
        {
            content: "It waits in the send queue: a clock",
            trigger: ".o_sw_message.o_sw_outbound:contains('11:00') .o_sw_status[data-state='queued'] .fa-clock-o",
        },
        {
            content: "The box is empty again",
            trigger: ".o_sw_composer textarea.o_sw_input",
            run() {
                if (this.anchor.value !== "") {
                    throw new Error(`The reply box still holds "${this.anchor.value}"`);
                }
            },
        },
        {
            content: "Meta reports it delivered: two grey ticks, live",
            trigger: ".o_sw_message.o_sw_outbound:contains('11:00') .o_sw_status[data-state='delivered'] .o_sw_ticks:not(.o_sw_read) .fa-check + .fa-check",
            timeout: 20000,
        },
    ],
});

/** The inbox and the account's health render: kanban, list, and the account form. */
registry.category("web_tour.tours").add("strato_whatsapp_inbox_tour", {
    steps: () => [
        {
            content: "The conversation shows its unread count and its open window",
            trigger: ".o_sw_conversation_kanban .o_kanban_record:contains('Lucía') .o_sw_unread_badge:contains('1')",
        },
        {
            content: "and what the contact wrote last",
            trigger: ".o_sw_conversation_kanban .o_kanban_record:contains('¿Tiene garaje?')",
        },
        {
            content: "Switch to the list",
            trigger: ".o_switch_view.o_list",
            run: "click",
        },
        {
            content: "The list shows the last message too",
            trigger: ".o_list_view .o_data_row td[name='last_message_preview']:contains('¿Tiene garaje?')",
        },
        {
            content: "Open the chat from the list",
            trigger: ".o_list_view .o_data_row button[name='action_open_chat']",
            run: "click",
        },
        {
            content: "It opens the lead, on its chat",
            trigger: ".o_form_view .o_sw_chat .o_sw_message.o_sw_inbound:contains('¿Tiene garaje?')",
        },
    ],
});

/**
 * An agent retries a message that could not be delivered, then changes their mind and cancels it while it
 * waits in the queue. What the agent reads is a sentence in their language, never Meta's code.
 */
registry.category("web_tour.tours").add("strato_whatsapp_retry_cancel_tour", {
    steps: () => [
        {
            content: "The failed message says what happened in plain words",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?') .o_sw_error:contains('WhatsApp')",
            run() {
                if (/131026|Error \d/.test(this.anchor.textContent)) {
                    throw new Error(`The agent reads a code: "${this.anchor.textContent}"`);
                }
            },
        },
        {
            content: "Retry it",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?') button.o_sw_retry",
            run: "click",
        },
        {
            content: "It waits in the queue again: a clock, and it can be cancelled",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?') .o_sw_status[data-state='queued'] .fa-clock-o",
        },
        {
            content: "Cancel it before it goes out",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?') button.o_sw_cancel",
            run: "click",
        },
        {
            content: "It is marked cancelled, with nothing left to do",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?') .o_sw_status[data-state='cancelled'] .fa-ban",
        },
        {
            content: "No retry or cancel button is left on it",
            trigger: ".o_sw_message.o_sw_outbound:contains('¿Sigue disponible?'):not(:has(.o_sw_actions))",
        },
    ],
});
