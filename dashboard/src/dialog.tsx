/**
 * A modal dialog: a title, what it asks, and a confirm and a cancel button. Escape cancels; the first field (or
 * the confirm button) takes the focus. Used where an operator's action changes the city: closing an alarm, a
 * command for many lights.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { useStore } from './hooks.ts';

export function Dialog(props: {
  title: string;
  testid: string;
  confirmLabel: string;
  confirmDisabled?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
  children?: ComponentChildren;
}) {
  const s = useStore();
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    (el?.querySelector('textarea, input, select') as HTMLElement | null)?.focus();
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') props.onCancel();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);
  return (
    <div class="dialog-backdrop">
      <div class="panel dialog" role="dialog" aria-modal="true" aria-label={props.title} data-testid={props.testid} ref={box}>
        <h2>{props.title}</h2>
        {props.children}
        <div class="dialog-actions">
          <button type="button" data-testid="dialog-cancel" onClick={props.onCancel}>
            {s.t('cancel')}
          </button>
          <button
            type="button"
            class="primary"
            data-testid="dialog-confirm"
            disabled={props.confirmDisabled}
            onClick={() => {
              if (!props.confirmDisabled) props.onConfirm();
            }}
          >
            {props.confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
